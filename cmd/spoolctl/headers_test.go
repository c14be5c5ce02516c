package main

import (
	"strings"
	"testing"
)

func TestCopyHeadersAndBody(t *testing.T) {
	cases := []struct{ in, headers, body string }{
		{"", "", ""},
		{"Subject: x\n", "Subject: x\n", ""},
		{"Subject: x\r\n\r\nbody\r\n", "Subject: x\n", "body\r\n"},
		{"A: 1\nB: 2\n  folded\n\nline1\n\nline3", "A: 1\nB: 2\n  folded\n", "line1\n\nline3"},
		{"\r\nbody only\r\n", "", "body only\r\n"},
	}
	for _, c := range cases {
		var h, b strings.Builder
		if err := copyHeaders(&h, strings.NewReader(c.in)); err != nil || h.String() != c.headers {
			t.Errorf("headers of %q = %q, %v; want %q", c.in, h.String(), err, c.headers)
		}
		if err := copyBody(&b, strings.NewReader(c.in)); err != nil || b.String() != c.body {
			t.Errorf("body of %q = %q, %v; want %q", c.in, b.String(), err, c.body)
		}
	}
}
