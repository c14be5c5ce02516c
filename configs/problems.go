package configs

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a config, located by file, line and key.
type Problem struct {
	File   string // the name given to Parse (the path for Load)
	Line   int    // 1-based; 0 when the key is absent and has no enclosing section
	Key    string // dotted path, e.g. accounts[1].client_secret_file; "" for the whole file
	Reason string // what is wrong and, where possible, the fix
}

// String formats "file:line: key: reason", leaving out the parts that are
// unknown.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Reason)
	return b.String()
}

// Problems is every problem found in a config. Load and Parse return it as a
// *Problems error; spoold -check prints Error() (one problem a line).
type Problems []Problem

// Error lists one problem per line, in file order.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sortByLine orders problems as they appear in the file; problems without a
// line (missing sections) come first, and ties keep their discovery order.
func (ps Problems) sortByLine() {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
}
