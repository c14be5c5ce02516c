package graph

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		"-5":                            0,
		"junk":                          0,
		"999999":                        time.Hour, // capped
		"Sat, 28 Nov 2026 12:00:30 GMT": 30 * time.Second,
		"Sat, 28 Nov 2026 11:00:00 GMT": 0, // in the past
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestKinds(t *testing.T) {
	cases := []struct {
		e    Error
		want Kind
	}{
		{Error{Op: OpSendMail, Err: errors.New("reset")}, KindTransient},
		{Error{Op: OpSendMail, Ambiguous: true}, KindAmbiguous},
		{Error{Op: OpSendMail, Status: 429, Code: "ApplicationThrottled"}, KindThrottled},
		{Error{Op: OpSendMail, Status: 503, RetryAfter: time.Second}, KindThrottled},
		{Error{Op: OpSendMail, Status: 503}, KindTransient},
		{Error{Op: OpSendMail, Status: 401, Code: "InvalidAuthenticationToken"}, KindAuth},
		{Error{Op: OpSendMail, Status: 403, Code: "ErrorAccessDenied"}, KindAccessDenied},
		{Error{Op: OpSendMail, Status: 403, Code: "ErrorSendAsDenied"}, KindSendAsDenied},
		{Error{Op: OpSendMail, Status: 404, Code: "ErrorInvalidUser"}, KindMailboxNotFound},
		{Error{Op: OpCreateDraft, Status: 404, Code: "MailboxNotEnabledForRESTAPI"}, KindMailboxNotFound},
		{Error{Op: OpGet, Status: 404, Code: "ErrorItemNotFound"}, KindNotFound},
		{Error{Op: OpSendMail, Status: 403, Code: "ErrorQuotaExceeded"}, KindMailboxFull},
		{Error{Op: OpSendMail, Status: 429, Code: "ErrorSubmissionQuotaExceeded"}, KindSubmissionQuota},
		{Error{Op: OpSendMail, Status: 403, Code: "ErrorMessageSubmissionBlocked"}, KindSubmissionBlocked},
		{Error{Op: OpSendMail, Status: 400, Code: "ErrorInvalidRecipients"}, KindInvalidRecipient},
		{Error{Op: OpSendMail, Status: 413}, KindTooLarge},
		{Error{Op: OpSendMail, Status: 400, Code: "ErrorMimeContentInvalidBase64String"}, KindBadRequest},
		{Error{Op: OpSendMail, Status: 502}, KindTransient},
	}
	for _, c := range cases {
		if got := c.e.Kind(); got != c.want {
			t.Errorf("%v: kind %d, want %d", c.e.Error(), got, c.want)
		}
	}
}

func TestErrorTextHasNoUploadURL(t *testing.T) {
	// An upload URL carries its own credential in the query.
	c := &Client{HTTP: &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("connection reset")
	})}}
	_, err := c.putOnce(t.Context(), "https://outlook.example/upload?authtoken=SECRET", []byte("x"), 0, 1)
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %v shows the upload URL's token", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// message builds a multipart message with a text part, an inline image
// with a Content-ID, a quoted-printable attachment and a base64 one.
func message(big []byte) string {
	enc := base64.StdEncoding.EncodeToString(big)
	var lines []string
	for len(enc) > 76 {
		lines = append(lines, enc[:76])
		enc = enc[76:]
	}
	lines = append(lines, enc)
	return "From: a@example.com\r\nTo: b@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n" +
		"--outer\r\nContent-Type: multipart/related; boundary=\"inner\"\r\n\r\n" +
		"--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<img src=\"cid:logo@x\">\r\n" +
		"--inner\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n" +
		"--inner--\r\n" +
		"--outer\r\nContent-Type: text/plain; name=\"notes.txt\"\r\nContent-Transfer-Encoding: quoted-printable\r\n" +
		"Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt\r\n\r\ncaf=C3=A9 =\r\nsoft break\r\n" +
		"--outer\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"=?utf-8?q?Scan_=C3=BC.pdf?=\"\r\n\r\n" + strings.Join(lines, "\r\n") + "\r\n" +
		"--outer--\r\n"
}

func TestPlanSkeletonAttachment(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640,000 bytes
	msg := message(big)
	l, err := Plan(strings.NewReader(msg), 100_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Parts) != 1 {
		t.Fatalf("parts %+v, want the large PDF only", l.Parts)
	}
	p := l.Parts[0]
	if p.Name != "Scan ü.pdf" || p.ContentType != "application/pdf" || p.Size != int64(len(big)) || p.Sum != sha256.Sum256(big) {
		t.Errorf("part %+v", p)
	}
	var skel bytes.Buffer
	if err := Skeleton(strings.NewReader(msg), l, &skel); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(skel.String(), "application/pdf") || !strings.Contains(skel.String(), "cid:logo@x") ||
		!strings.Contains(skel.String(), "caf=C3=A9") || int64(skel.Len()) > 100_000 {
		t.Errorf("skeleton (%d bytes) should keep everything but the PDF:\n%s", skel.Len(), skel.String())
	}
	// The skeleton is a valid message again: planning it finds no PDF.
	l2, err := Plan(bytes.NewReader(skel.Bytes()), 1<<30)
	if err != nil {
		t.Fatalf("skeleton does not parse: %v", err)
	}
	var got []byte
	if err := Attachment(strings.NewReader(msg), p.Path, func(r io.Reader) error {
		got, err = io.ReadAll(r)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Errorf("attachment decoded to %d bytes, want %d", len(got), len(big))
	}
	_ = l2
	// The quoted-printable attachment keeps its RFC 2231 name.
	l3, err := Plan(strings.NewReader(msg), 400)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range l3.Parts {
		names[p.Name] = true
	}
	if !names["résumé.txt"] || !names["Scan ü.pdf"] {
		t.Errorf("with a small budget, parts %v", names)
	}
}

func TestPlanRefusesWhatCannotSplit(t *testing.T) {
	body := strings.Repeat("x", 5000)
	msg := "Subject: big text\r\nContent-Type: text/plain\r\n\r\n" + body
	if _, err := Plan(strings.NewReader(msg), 1000); !errors.Is(err, ErrContent) {
		t.Errorf("Plan = %v, want ErrContent for a large text body", err)
	}
}

// FuzzPlan: whatever a device sends, planning never panics, and a message
// that plans splits and reassembles consistently.
func FuzzPlan(f *testing.F) {
	f.Add(message([]byte("hello world, this is a pdf")), int64(200))
	f.Add("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\n--x--", int64(10))
	f.Add("no header", int64(1))
	f.Fuzz(func(t *testing.T, msg string, budget int64) {
		l, err := Plan(strings.NewReader(msg), budget)
		if err != nil {
			return
		}
		var skel bytes.Buffer
		if err := Skeleton(strings.NewReader(msg), l, &skel); err != nil {
			t.Fatalf("planned but no skeleton: %v", err)
		}
		for _, p := range l.Parts {
			err := Attachment(strings.NewReader(msg), p.Path, func(r io.Reader) error {
				h := sha256.New()
				n, err := io.Copy(h, r)
				if err == nil && (n != p.Size || !bytes.Equal(h.Sum(nil), p.Sum[:])) {
					t.Fatalf("part %v: %d bytes read again, planned %d", p.Path, n, p.Size)
				}
				return err
			})
			if err != nil {
				t.Fatalf("planned part %v cannot be read again: %v", p.Path, err)
			}
		}
	})
}
