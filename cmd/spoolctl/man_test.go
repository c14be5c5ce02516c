package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

var (
	helpFlagRE = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([\w-]+)`)
	manFlagRE  = regexp.MustCompile(`\\fB--([\w-]+)\\fP`)
)

// The man pages are generated from the command tree, so each page lists
// exactly the flags that the command's --help lists, and every visible
// command has its page. Packaging ships what `spoolctl man` writes.
func TestManPagesMatchHelp(t *testing.T) {
	dir := t.TempDir()
	if r := runCLI(t, &deps{}, "man", "--dir", dir, "--date", "2026-01-02", "--source", "spoold 9.9.9"); r.code != 0 {
		t.Fatalf("man: %+v", r)
	}
	root := newRootCmd(&deps{})
	// Execute adds the completion command; the man command runs after it.
	root.InitDefaultCompletionCmd()
	var pages []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root {
			return
		}
		page := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".8"
		pages = append(pages, page)
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Errorf("%s: no page: %v", c.CommandPath(), err)
			return
		}
		man := string(b)
		args := append(strings.Fields(c.CommandPath())[1:], "--help")
		r := runCLI(t, &deps{}, args...)
		if r.code != 0 {
			t.Fatalf("%s --help: %+v", c.CommandPath(), r)
		}
		help, manFlags := flagNames(helpFlagRE, r.stdout), flagNames(manFlagRE, man)
		if !slices.Equal(help, manFlags) {
			t.Errorf("%s: --help lists flags %q, the man page %q", page, help, manFlags)
		}
		if !strings.Contains(man, `.TH "`+strings.ToUpper(strings.ReplaceAll(c.CommandPath(), " ", "-"))+`" "8" "Jan 2026" "spoold 9.9.9" "spoold manual"`) {
			t.Errorf("%s: header: %.120q", page, man)
		}
		if short := strings.Fields(c.Short); len(short) > 0 && !strings.Contains(man, short[len(short)-1]) {
			t.Errorf("%s: lacks the command's summary %q", page, c.Short)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var written []string
	for _, e := range entries {
		written = append(written, e.Name())
	}
	slices.Sort(pages)
	if !slices.Equal(pages, written) {
		t.Errorf("pages written %q, want one per visible command %q", written, pages)
	}
	if slices.Contains(written, "spoolctl-man.8") {
		t.Error("the hidden man command has a page")
	}
}

func flagNames(re *regexp.Regexp, s string) []string {
	var names []string
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	slices.Sort(names)
	return names
}
