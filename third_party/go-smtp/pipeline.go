package smtp

import (
	"errors"
	"time"
)

// spoold patch: PIPELINING (RFC 2920) for the client. This whole file is new.

// MailRcptData starts a mail transaction: MAIL FROM, one RCPT TO per
// recipient, then DATA. It has the outcome of calling Mail, Rcpt for each
// recipient and, when at least one recipient was accepted, Data; but when the
// server advertises PIPELINING the commands go out in one write and their
// replies are read afterwards in order: one round trip instead of two plus
// one per recipient.
//
// rcptErrs has one entry per recipient of to: nil when the server accepted
// it, else its *SMTPError. w is non-nil when DATA was accepted (354): write
// the message to it and close it as after Data. err is a local error (before
// anything is sent), MAIL's or DATA's refusal (*SMTPError), or a connection
// error after which the client is unusable. When MAIL is refused, rcptErrs
// is nil; when no recipient is accepted, w and err are nil. Either way the
// transaction is open on the server: send RSET (Reset) before the next one.
//
// RFC 2920 section 3.1: the client checks every reply of the group and
// cannot assume DATA is refused because no RCPT succeeded; a server that
// answers 354 anyway gets an empty message (a lone ".") whose reply is read
// and ignored.
//
// Unlike calling Rcpt in a loop, every command is built before anything is
// sent, so an invalid recipient fails the call without a MAIL on the wire.
func (c *Client) MailRcptData(from string, opts *MailOptions, to []string, rcptOpts *RcptOptions) (rcptErrs []error, w *DataCommand, err error) {
	return c.mailRcptGroup(from, opts, to, rcptOpts, true)
}

// mailRcpt is MailRcptData without DATA (for BDAT): the same outcomes except
// that no data writer is returned.
func (c *Client) mailRcpt(from string, opts *MailOptions, to []string, rcptOpts *RcptOptions) ([]error, error) {
	errs, _, err := c.mailRcptGroup(from, opts, to, rcptOpts, false)
	return errs, err
}

// mailRcptGroup sends MAIL, the RCPTs and, when data is set, DATA.
func (c *Client) mailRcptGroup(from string, opts *MailOptions, to []string, rcptOpts *RcptOptions, data bool) (rcptErrs []error, w *DataCommand, err error) {
	if _, ok := c.ext["PIPELINING"]; !ok {
		return c.mailRcptDataLockstep(from, opts, to, rcptOpts, data)
	}
	if err := validateLine(from); err != nil {
		return nil, nil, err
	}
	if err := c.hello(); err != nil {
		return nil, nil, err
	}
	lines := make([]string, 0, len(to)+2)
	line, err := c.mailLine(from, opts)
	if err != nil {
		return nil, nil, err
	}
	lines = append(lines, line)
	for _, rcpt := range to {
		if err := validateLine(rcpt); err != nil {
			return nil, nil, err
		}
		line, err := c.rcptLine(rcpt, rcptOpts)
		if err != nil {
			return nil, nil, err
		}
		lines = append(lines, line)
	}
	if data {
		lines = append(lines, "DATA")
	}

	defer c.conn.SetDeadline(time.Time{})
	c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
	for _, l := range lines {
		c.text.W.WriteString(l)
		c.text.W.WriteString("\r\n")
	}
	if err := c.text.W.Flush(); err != nil {
		return nil, nil, err
	}

	// Every reply is read, whatever came before, so the connection stays
	// in step with the server.
	read := func(expect int) error {
		c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
		_, _, err := c.readResponse(expect)
		return err
	}
	mailErr := read(250)
	if mailErr != nil && !isSMTPErr(mailErr) {
		return nil, nil, mailErr
	}
	if mailErr == nil {
		c.rcpts = nil
	}
	errs := make([]error, len(to))
	accepted := 0
	for i, rcpt := range to {
		err := read(25)
		if err != nil && !isSMTPErr(err) {
			return nil, nil, err
		}
		errs[i] = err
		if err == nil && mailErr == nil {
			accepted++
			c.rcpts = append(c.rcpts, rcpt)
		}
	}
	if !data {
		if mailErr != nil {
			return nil, nil, mailErr
		}
		return errs, nil, nil
	}
	dataErr := read(354)
	if dataErr != nil && !isSMTPErr(dataErr) {
		if mailErr != nil {
			return nil, nil, dataErr
		}
		return errs, nil, dataErr
	}
	if dataErr == nil && (mailErr != nil || accepted == 0) {
		// 354 without a transaction worth sending: end it empty.
		if err := c.abortData(); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case mailErr != nil:
		return nil, nil, mailErr
	case accepted == 0:
		return errs, nil, nil
	case dataErr != nil:
		return errs, nil, dataErr
	}
	// spoold patch: the run-copying dot writer, as in Data.
	return errs, &DataCommand{client: c, wc: &dotWriter{w: c.text.W}}, nil
}

// mailRcptDataLockstep is MailRcptData for a server without PIPELINING: one
// command, one reply.
func (c *Client) mailRcptDataLockstep(from string, opts *MailOptions, to []string, rcptOpts *RcptOptions, data bool) ([]error, *DataCommand, error) {
	// As in the pipelined path, nothing goes out when a command is invalid.
	if err := c.hello(); err != nil {
		return nil, nil, err
	}
	for _, rcpt := range to {
		if err := validateLine(rcpt); err != nil {
			return nil, nil, err
		}
		if _, err := c.rcptLine(rcpt, rcptOpts); err != nil {
			return nil, nil, err
		}
	}
	if err := c.Mail(from, opts); err != nil {
		return nil, nil, err
	}
	errs := make([]error, len(to))
	accepted := 0
	for i, rcpt := range to {
		err := c.Rcpt(rcpt, rcptOpts)
		if err != nil && !isSMTPErr(err) {
			return nil, nil, err
		}
		errs[i] = err
		if err == nil {
			accepted++
		}
	}
	if accepted == 0 || !data {
		return errs, nil, nil
	}
	w, err := c.Data()
	return errs, w, err
}

// abortData ends a DATA the server accepted but the client has nothing to
// send for, and reads (and drops) the reply to the empty message.
func (c *Client) abortData() error {
	c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
	c.text.W.WriteString(".\r\n")
	if err := c.text.W.Flush(); err != nil {
		return err
	}
	_, _, err := c.readResponse(250)
	if err != nil && !isSMTPErr(err) {
		return err
	}
	return nil
}

func isSMTPErr(err error) bool {
	var se *SMTPError
	return errors.As(err, &se)
}
