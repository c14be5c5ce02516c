package field

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestFileChecks(t *testing.T) {
	dir := t.TempDir()
	private := filepath.Join(dir, "key.pem")
	open := filepath.Join(dir, "cert.pem")
	for path, mode := range map[string]os.FileMode{private: 0o600, open: 0o644} {
		if err := os.WriteFile(path, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // umask aside
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name string
		got  string
		want string // a part of the reason, "" for none
	}{
		{"readable file", ReadableFile(open), ""},
		{"readable dir", ReadableFile(dir), "is a directory"},
		{"readable missing", ReadableFile(missing), "cannot read " + missing + ": no such file"},
		{"private file", PrivateFile(private), ""},
		{"private dir", PrivateFile(dir), "is not a regular file"},
		{"private missing", PrivateFile(missing), "cannot read " + missing + ": no such file"},
	} {
		if tc.want == "" && tc.got != "" || !strings.Contains(tc.got, tc.want) {
			t.Errorf("%s: reason %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if runtime.GOOS != "windows" {
		if got := PrivateFile(open); !strings.Contains(got, "readable by group/others: run chmod 600 "+open) {
			t.Errorf("PrivateFile(0644) = %q, want the chmod fix", got)
		}
		if err := os.Chmod(private, 0o620); err != nil {
			t.Fatal(err)
		}
		if got := PrivateFile(private); !strings.Contains(got, "writable by group/others") {
			t.Errorf("PrivateFile(0620) = %q, want writable by group", got)
		}
	}
	// The path is named once, by the reason, not again by the wrapped error.
	if got := ReadableFile(missing); strings.Count(got, missing) != 1 {
		t.Errorf("ReadableFile(missing) = %q, names the path more than once", got)
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"recipients", "subject", "sender"}
	for name, want := range map[string]string{
		"recipient":             "recipients",
		" Subjct ":              "subject",
		"SENDER":                "sender",
		"colour":                "",
		"":                      "",
		strings.Repeat("s", 70): "",
	} {
		if got := Suggest(name, known); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", name, got, want)
		}
	}
	if got := Suggest("ab", []string{"ax", "ay"}); got != "ax" {
		t.Errorf("a tie went to %q, want the earlier entry ax", got)
	}
}
