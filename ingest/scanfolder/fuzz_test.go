package scanfolder

import (
	"bytes"
	"mime"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
)

var allowedTop = []string{"Date", "From", "Reply-To", "To", "Cc", "Subject", "Message-Id", "Auto-Submitted", "Mime-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition"}

// checkHeaderKeys fails if the parsed header has any field we did not write:
// that would be an injection.
func checkHeaderKeys(t *testing.T, h mail.Header) {
	t.Helper()
	fields := h.Fields()
	for fields.Next() {
		k := fields.Key()
		if !slices.ContainsFunc(allowedTop, func(a string) bool { return strings.EqualFold(a, k) }) {
			t.Fatalf("unexpected header field %q (injection?)", k)
		}
	}
}

func buildScan(t *testing.T, hdr msgHeader, text, name string, file []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := writeScanMessage(&b, hdr, text, name, contentType(name, file), bytes.NewReader(file)); err != nil {
		t.Fatalf("building: %v", err)
	}
	return b.Bytes()
}

func FuzzSidecar(f *testing.F) {
	f.Add([]byte(`{"to":["a@example.com"],"cc":"b@example.com","subject":"Hi","body":"text\n"}`))
	f.Add([]byte(`{"to":"a@example.com\r\nBcc: x@y.z"}`))
	f.Add([]byte(`{"subject":"x\r\nBcc: x@y.z","to":"a@b.c"}`))
	f.Add([]byte(`{"to":["\"Evil\" <a@b.c>"]}`))
	f.Add([]byte(`{"unknown":1}`))
	f.Add([]byte(`{"to":"a@b.c"} {"to":"d@e.f"}`))
	f.Add([]byte(`{"to":"ü@bücher.example","subject":"Grüße"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := ParseSidecar(data)
		if err != nil {
			return
		}
		if len(sc.To) == 0 {
			sc.To = []string{"default@example.com"}
		}
		hdr := msgHeader{
			from: mail.Address{Name: "U", Address: "u@example.com"}, to: sc.To, cc: sc.Cc,
			subject: sc.Subject, date: time.Unix(0, 0), messageID: "x@spoold.test",
		}
		body := buildScan(t, hdr, sc.Body, "a.pdf", []byte("%PDF"))
		p := parseMessage(t, body)
		checkHeaderKeys(t, p.header)
		if got := addrs(t, p.header, "To"); !slices.Equal(got, sc.To) {
			t.Fatalf("To = %v, want %v", got, sc.To)
		}
		if s, _ := p.header.Subject(); s != sc.Subject {
			t.Fatalf("Subject = %q, want %q", s, sc.Subject)
		}
		if !bytes.Equal(p.attachment, []byte("%PDF")) {
			t.Fatal("attachment damaged")
		}
	})
}

func FuzzNameRoute(f *testing.F) {
	f.Add("alice@example.com", "scan0042.pdf")
	f.Add("bob", "Rechnung März.pdf")
	f.Add("alice@example.com", "x.pdf\r\nBcc: victim@evil.example")
	f.Add("a@b.c\nBcc: d@e.f", "x.pdf")
	f.Add("alice@example.com", "\"quoted\"; name=evil.pdf")
	f.Add("alice@example.com", "=?utf-8?q?x?=.pdf")
	f.Add("", "root.pdf")
	users := map[string]User{"bob": {Name: "Bob \"B\" Builder", Address: "bob@example.com"}}
	f.Fuzz(func(t *testing.T, sub, name string) {
		rel := name
		if sub != "" {
			rel = sub + "/" + name
		}
		rt, err := resolveRoute(rel, users, nil)
		if err != nil {
			return
		}
		base := path.Base(rel)
		if hasCtl(base) || hasCtl(rel) {
			t.Fatalf("route accepted control characters in %q", rel)
		}
		data := TemplateData{File: base, Path: rel, Folder: "scans", Size: 4, SizeText: sizeText(4)}
		subject, err := render("subject", DefaultSubjectTemplate, data)
		if err != nil {
			t.Fatal(err)
		}
		subject = oneLine(subject)
		text, err := render("body", DefaultBodyTemplate, data)
		if err != nil {
			t.Fatal(err)
		}
		from := mail.Address{Name: rt.user.Name, Address: rt.user.Address}
		hdr := msgHeader{from: from, replyTo: &from, to: rt.to, subject: subject, date: time.Unix(0, 0), messageID: "x@spoold.test"}
		body := buildScan(t, hdr, text, base, []byte("%PDF"))
		p := parseMessage(t, body)
		checkHeaderKeys(t, p.header)
		// go-message also decodes RFC 2047 words inside parameters, so
		// compare what a strict RFC 2231 reader sees.
		_, params, err := mime.ParseMediaType(p.disp)
		if err != nil || params["filename"] != base {
			t.Fatalf("filename %q (%v) from %q, want %q", params["filename"], err, p.disp, base)
		}
		if p.parts != 2 {
			t.Fatalf("%d parts, want 2", p.parts)
		}
		if got := addrs(t, p.header, "To"); !slices.Equal(got, rt.to) {
			t.Fatalf("To = %v, want %v", got, rt.to)
		}
	})
}
