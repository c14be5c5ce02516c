package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/configs/units"
)

// docLeaf is one key of the reference config with the value it shows.
type docLeaf struct {
	key      string // dotted: smtp_listeners[0].max_connections
	line     int    // 1-based line of the key
	lastLine int    // last line of its value (a block list spans several)
	value    any    // the value as YAML reads it
	comment  string // the key's trailing comment
}

// docLeaves lists every leaf key of a YAML file (scalars, lists and flow
// maps; block maps are walked into).
func docLeaves(t *testing.T, data []byte) []docLeaf {
	t.Helper()
	f, err := parser.ParseBytes(data, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var out []docLeaf
	var walk func(n ast.Node, key string)
	walk = func(n ast.Node, key string) {
		switch v := n.(type) {
		case *ast.MappingNode:
			for _, mv := range v.Values {
				walk(mv, key)
			}
		case *ast.MappingValueNode:
			k := v.Key.GetToken().Value
			full := k
			if key != "" {
				full = key + "." + k
			}
			if m, ok := v.Value.(*ast.MappingNode); ok && !m.IsFlowStyle && !isLeafList(key, k) {
				walk(m, full)
				return
			}
			if s, ok := v.Value.(*ast.SequenceNode); ok && !s.IsFlowStyle && len(s.Values) > 0 {
				if _, items := s.Values[0].(*ast.MappingNode); items && !isLeafList(key, k) {
					for i, item := range s.Values {
						walk(item, fmt.Sprintf("%s[%d]", full, i))
					}
					return
				}
			}
			leaf := docLeaf{key: full, line: v.Key.GetToken().Position.Line}
			leaf.lastLine = lastLine(v.Value, leaf.line)
			// The comment on the key's own line (the parser attaches a
			// block value's comment elsewhere).
			if _, c, ok := strings.Cut(lines[leaf.line-1], " # "); ok {
				leaf.comment = "# " + c
			}
			if err := yaml.Unmarshal([]byte(v.Value.String()), &leaf.value); err != nil {
				t.Fatalf("%s: %v", full, err)
			}
			out = append(out, leaf)
		}
	}
	walk(f.Docs[0].Body, "")
	return out
}

// isLeafList: tables compared whole (users and routes are one value each,
// not keys with defaults of their own).
func isLeafList(parent, key string) bool { return key == "users" || key == "sender_domains" }

func lastLine(n ast.Node, from int) int {
	last := from
	ast.Walk(visitFunc(func(n ast.Node) {
		if tk := n.GetToken(); tk != nil && tk.Position != nil && tk.Position.Line > last {
			last = tk.Position.Line
		}
	}), n)
	return last
}

type visitFunc func(ast.Node)

func (f visitFunc) Visit(n ast.Node) ast.Visitor { f(n); return f }

// valueAt reads a dotted key out of a printed config.
func valueAt(t *testing.T, printed []byte, key string) any {
	t.Helper()
	path, err := yaml.PathString("$." + key)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	var v any
	if err := path.Read(bytes.NewReader(printed), &v); err != nil {
		t.Fatalf("%s not in the printed config: %v", key, err)
	}
	return v
}

// sameValue compares as a reader would: 5m and 5m0s, 35MB and 35000000,
// nil and an empty list are the same.
func sameValue(a, b any) bool {
	if isEmpty(a) && isEmpty(b) {
		return true
	}
	sa, sb := fmt.Sprint(a), fmt.Sprint(b)
	if sa == sb || strings.Contains(sa, "/") && filepath.Clean(sa) == filepath.Clean(sb) {
		return true
	}
	if da, err := units.ParseDuration(sa); err == nil {
		if db, err := units.ParseDuration(sb); err == nil {
			return da == db
		}
	}
	if na, err := configs.ParseSize(sa); err == nil {
		if nb, err := configs.ParseSize(sb); err == nil {
			return na == nb
		}
	}
	return reflect.DeepEqual(a, b)
}

func isEmpty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map:
		return rv.Len() == 0
	case reflect.String:
		return rv.Len() == 0
	}
	return false
}

// withoutLines drops lines from..to (1-based, inclusive); a list item's
// first key leaves its "-" behind.
func withoutLines(data []byte, from, to int) []byte {
	lines := strings.SplitAfter(string(data), "\n")
	var b strings.Builder
	for i, l := range lines {
		switch {
		case i+1 < from || i+1 > to:
			b.WriteString(l)
		case i+1 == from && strings.HasPrefix(strings.TrimSpace(l), "- "):
			b.WriteString(l[:strings.Index(l, "-")+1] + "\n")
		}
	}
	return []byte(b.String())
}

// printEffective runs the config through the daemon's plan and prints what
// the daemon would run, as -print-config does.
func printEffective(t *testing.T, name string, data []byte, env func(string) (string, bool)) ([]byte, error) {
	t.Helper()
	var p *plan
	if _, err := configs.Parse(name, data, env, planChecker(&p)); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := configs.Print(&out, p.effective()); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), nil
}

// TestReferenceShowsTheDefaults holds configs/spoold.example.yaml to its
// promise, "every key is shown with its default value": for each key,
// the daemon's effective value with the key left out equals the value
// shown. Keys that show an example instead say "required" or "e.g." in
// their comment, or are listed here with the default their comment states.
func TestReferenceShowsTheDefaults(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "configs", "spoold.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := t.TempDir()
	data = []byte(strings.ReplaceAll(string(data), "/etc/spoold/", secrets+"/"))
	env := func(name string) (string, bool) { return "secret-from-" + name, true }
	host, _ := os.Hostname()

	// Keys whose shown value is an example rather than the default: the
	// default their comment must state, and the value the daemon gives
	// them when they are left out (nil: left out, the reference would not
	// validate, so only the comment is checked).
	examples := map[string]struct {
		says string
		want any
	}{
		"smtp_listeners[0].hostname":         {"default the machine's host name", host},
		"smtp_listeners[0].tls":              {"default none", nil},
		"smtp_listeners[0].allowed_networks": {"default []", []any{}},
		"smtp_listeners[0].users":            {"default []", nil},
		"scan_folders[0].account":            {"default routes.default", "outbox"},
		"accounts[0].transport":              {"smtp (default)", nil},
		"scan_folders[0].users":              {"default {}", map[string]any{}},
		"routes.sender_domains":              {"default {}", map[string]any{}},
		"routes.users":                       {"default {}", map[string]any{}},
	}
	checked := 0
	for _, leaf := range docLeaves(t, data) {
		if strings.Contains(leaf.comment, "required") || strings.Contains(leaf.comment, "e.g.") || strings.HasPrefix(leaf.key, "accounts[1].provider") {
			continue
		}
		want := leaf.value
		if ex, isExample := examples[leaf.key]; isExample {
			if !strings.Contains(leaf.comment, ex.says) {
				t.Errorf("spoold.example.yaml:%d: %s: the comment %q does not say %q", leaf.line, leaf.key, leaf.comment, ex.says)
			}
			if ex.want == nil {
				continue
			}
			want = ex.want
		}
		twin := withoutLines(data, leaf.line, leaf.lastLine)
		printed, err := printEffective(t, "twin.yaml", twin, env)
		if err != nil {
			t.Errorf("%s (line %d): without it the reference does not validate: %v", leaf.key, leaf.line, err)
			continue
		}
		got := valueAt(t, printed, leaf.key)
		if !sameValue(got, want) {
			t.Errorf("spoold.example.yaml:%d: %s shows %v, but left out it is %v", leaf.line, leaf.key, want, got)
		}
		checked++
	}
	t.Logf("%d keys of the reference checked against the daemon's defaults", checked)
	if checked < 80 {
		t.Errorf("checked only %d keys of the reference; the walk is broken", checked)
	}
}
