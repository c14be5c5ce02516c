package scanfolder

import (
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
)

// headerOverhead is the allowance for the top-level header, MIME boundaries
// and part headers in the size estimate.
const headerOverhead = 4 << 10

// extType covers scanner formats that mime.TypeByExtension may not know
// (its built-in table has no TIFF, and /etc/mime.types differs by host).
func extType(ext string) string {
	switch ext {
	case ".pdf":
		return "application/pdf"
	case ".tif", ".tiff":
		return "image/tiff"
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".png":
		return "image/png"
	case ".gif":
		return "image/gif"
	case ".bmp":
		return "image/bmp"
	case ".webp":
		return "image/webp"
	case ".xps":
		return "application/vnd.ms-xpsdocument"
	case ".oxps":
		return "application/oxps"
	case ".txt":
		return "text/plain"
	case ".csv":
		return "text/csv"
	case ".zip":
		return "application/zip"
	case ".docx":
		return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
	case ".xlsx":
		return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	}
	return ""
}

// contentType picks the attachment's media type: by extension, else by
// sniffing the first bytes (http.DetectContentType).
func contentType(name string, head []byte) string {
	ext := strings.ToLower(path.Ext(name))
	if t := extType(ext); t != "" {
		return t
	}
	if ext != "" {
		if t := mime.TypeByExtension(ext); t != "" {
			if mt, _, err := mime.ParseMediaType(t); err == nil {
				return mt
			}
		}
	}
	mt, _, err := mime.ParseMediaType(http.DetectContentType(head))
	if err != nil {
		return "application/octet-stream"
	}
	return mt
}

// encodedSize estimates the size of the whole message: base64 of the file
// (4/3, 76-character lines with CRLF), the text part (quoted-printable worst
// case 3x) and a header allowance.
func encodedSize(fileSize int64, textLen int) int64 {
	b64 := (fileSize + 2) / 3 * 4
	lines := (b64 + 75) / 76
	return b64 + 2*lines + 3*int64(textLen) + headerOverhead
}

// sizeText formats bytes for humans (decimal units, as mail clients show them).
func sizeText(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d bytes", n)
}

// msgHeader holds the top-level header values of a scan message (failure
// notices are built by spool/notice).
// Every value has been validated (no control characters); go-message encodes
// non-ASCII text (RFC 2047) and refuses CR/LF as a last line of defence.
type msgHeader struct {
	from      mail.Address
	replyTo   *mail.Address
	to, cc    []string
	subject   string
	date      time.Time
	messageID string // from notice.MessageID, without angle brackets
}

func (m msgHeader) build() mail.Header {
	var h mail.Header
	h.SetDate(m.date)
	h.SetAddressList("From", []*mail.Address{&m.from})
	if m.replyTo != nil {
		h.SetAddressList("Reply-To", []*mail.Address{m.replyTo})
	}
	h.SetAddressList("To", addrList(m.to))
	if len(m.cc) > 0 {
		h.SetAddressList("Cc", addrList(m.cc))
	}
	h.SetSubject(m.subject)
	h.SetMessageID(m.messageID)
	return h
}

func addrList(l []string) []*mail.Address {
	out := make([]*mail.Address, len(l))
	for i, a := range l {
		out[i] = &mail.Address{Address: a}
	}
	return out
}

// writeScanMessage writes the multipart/mixed message: the text part, then
// the attachment streamed from file (base64). It never holds the file in memory.
func writeScanMessage(w io.Writer, h msgHeader, text, fileName, ctype string, file io.Reader) error {
	mw, err := mail.CreateWriter(w, h.build())
	if err != nil {
		return fmt.Errorf("writing header: %w", err)
	}
	var th mail.InlineHeader
	th.Set("Content-Type", "text/plain; charset=utf-8")
	tw, err := mw.CreateSingleInline(th)
	if err != nil {
		return fmt.Errorf("writing text part: %w", err)
	}
	if _, err := io.WriteString(tw, text); err != nil {
		return fmt.Errorf("writing text part: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing text part: %w", err)
	}
	var ah mail.AttachmentHeader
	ah.Set("Content-Type", withParam(ctype, "name", fileName))
	ah.Set("Content-Disposition", withParam("attachment", "filename", fileName))
	ah.Set("Content-Transfer-Encoding", "base64")
	aw, err := mw.CreateAttachment(ah)
	if err != nil {
		return fmt.Errorf("writing attachment: %w", err)
	}
	if _, err := io.Copy(aw, file); err != nil {
		return fmt.Errorf("writing attachment: %w", err)
	}
	if err := aw.Close(); err != nil {
		return fmt.Errorf("writing attachment: %w", err)
	}
	if err := mw.Close(); err != nil {
		return fmt.Errorf("closing message: %w", err)
	}
	return nil
}

// withParam formats "value; key=param". Plain ASCII names are quoted as
// needed; non-ASCII names, and names that look like RFC 2047 encoded words
// (which readers would decode) or with space runs (which header folding can
// shorten), use RFC 2231 (key*=utf-8'<lang>'<pct-encoded>), preceded by an RFC 2047
// encoded word in the plain parameter (key="=?utf-8?b?...?=") for mail
// clients that predate RFC 2231 (older Outlook, many webmail viewers):
// RFC 2231 readers take key*, the others decode the word. The name was
// checked for control characters, so the result is one header-safe line.
func withParam(value, key, param string) string {
	if isASCII(param) && !strings.Contains(param, "=?") && !strings.Contains(param, "  ") &&
		!strings.HasPrefix(param, " ") && !strings.HasSuffix(param, " ") {
		if v := mime.FormatMediaType(value, map[string]string{key: param}); v != "" {
			return v
		}
	}
	var b strings.Builder
	b.WriteString(value)
	b.WriteString("; ")
	b.WriteString(key)
	b.WriteString(`="`)
	b.WriteString(encodeWords(param))
	b.WriteString(`"; `)
	b.WriteString(key)
	b.WriteString("*=utf-8''")
	const hexd = "0123456789ABCDEF"
	for i := 0; i < len(param); i++ {
		c := param[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexd[c>>4])
		b.WriteByte(hexd[c&15])
	}
	return b.String()
}

// encodeWords encodes s as RFC 2047 base64 words, each at most 75
// characters and holding whole UTF-8 characters, separated by single
// spaces (which decoders drop between adjacent encoded words). Base64 is
// used, not Q, because Q would need quoting inside a quoted string.
func encodeWords(s string) string {
	const prefix, suffix = "=?utf-8?b?", "?="
	const maxRaw = (75 - len(prefix) - len(suffix)) / 4 * 3 // 45 bytes -> 60 base64 characters
	var words []string
	for len(s) > 0 {
		n := min(len(s), maxRaw)
		for n < len(s) && n > 0 && !utf8RuneStart(s[n]) {
			n--
		}
		if n == 0 {
			n = min(len(s), maxRaw) // not UTF-8 (cannot happen: names were checked)
		}
		words = append(words, prefix+base64.StdEncoding.EncodeToString([]byte(s[:n]))+suffix)
		s = s[n:]
	}
	return strings.Join(words, " ")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
