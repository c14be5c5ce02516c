package configs

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"iter"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/spoold/spoold/configs/field"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultName is the file name problems in the embedded default carry.
const DefaultName = "(embedded default)"

// Default returns a copy of the embedded default configuration
// (DESIGN.md section 1): data in ./data, SMTP on 127.0.0.1:2525 for loopback
// clients without AUTH, scan folder ./scans, HTTP on 127.0.0.1:8925 and one
// account "outbox" writing .eml files into ./data/outbox.
func Default() []byte { return slices.Clone(defaultYAML) }

// Checker validates a decoded config as the daemon will run it: it converts
// the config into each subsystem's options and returns their problems, keyed
// by dotted YAML key (smtp_listeners[0].max_connections). configs attaches
// file:line to them. nil checks decoding and references only.
type Checker func(*Config) field.Problems

// LoadDefault parses the embedded default with the process environment.
func LoadDefault(check Checker) (*Config, error) {
	return Parse(DefaultName, defaultYAML, nil, check)
}

// Load reads, decodes, resolves secrets and validates the config file at
// path. Any failure, including an unreadable file, is a *Problems listing
// every problem found.
func Load(path string, check Checker) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Problems{{File: path, Reason: fmt.Sprintf("cannot read config: %v", field.UnwrapPathErr(err))}}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, &Problems{{File: path, Reason: fmt.Sprintf("cannot read config: %v", field.UnwrapPathErr(err))}}
	}
	return Parse(path, data, nil, check)
}

// Parse decodes and validates a config. name is used in problems (the file
// path for Load); env looks up ${NAME} references in secret fields (nil means
// os.LookupEnv). *_file paths are read from the file system, relative to the
// working directory. On any problem it returns nil and a *Problems with
// every problem found, sorted by line, including those check returns.
func Parse(name string, data []byte, env func(string) (string, bool), check Checker) (*Config, error) {
	return parse(name, data, env, check)
}

func parse(name string, data []byte, env func(string) (string, bool), check Checker) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	if len(data) > maxConfigSize {
		return nil, &Problems{{File: name, Reason: "config is larger than 4 MiB"}}
	}
	d := newDecoder(name)
	// Windows Notepad saves UTF-8 with a byte order mark; it is not part of
	// the first key.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	file, err := safeParse(data)
	if err != nil {
		p := Problem{File: name, Reason: err.Error()}
		if ye, ok := err.(yaml.Error); ok {
			p.Reason = "YAML syntax: " + ye.GetMessage()
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				p.Line = tk.Position.Line
			}
		}
		if lines := bytes.Split(data, []byte("\n")); p.Line > 0 && p.Line <= len(lines) && bytes.ContainsRune(lines[p.Line-1], '\t') {
			p.Reason += " (YAML does not allow tabs for indentation: indent with spaces, not tabs)"
		}
		return nil, &Problems{p}
	}
	var body ast.Node
	for _, doc := range file.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if _, comment := doc.Body.(*ast.CommentGroupNode); comment {
			continue
		}
		if body != nil {
			d.add(nodeLine(doc.Body), "", "only one YAML document is allowed")
			break
		}
		body = doc.Body
	}
	c := &Config{}
	c.setDefaults()
	if body != nil {
		ast.Walk(anchorVisitor{d}, body)
		d.value(body, reflect.ValueOf(c).Elem(), "")
	}
	c.derive()
	v := &validator{d: d, env: env}
	v.validate(c)
	if check != nil && !d.bad[""] {
		// One complaint per key: auth and delivery both judge an account's
		// name and mailbox, and a key this layer already refused needs no
		// second opinion.
		seen := map[string]bool{}
		for _, p := range d.probs {
			seen[p.Key] = true
		}
		// Some keys decide which checks apply to their list item; when one
		// did not decode, the item holds a default there, and judging it
		// would mislead (an account whose transport is "ftp" is not an SMTP
		// account without a host).
		var badItems []string
		for k := range d.bad {
			i := strings.Index(k, "].")
			if i > 0 && strings.HasPrefix(k, "accounts[") && slices.Contains([]string{"transport", "provider", "flow", "auth", "tls"}, k[i+2:]) {
				badItems = append(badItems, k[:i+1])
			}
		}
		for _, p := range check(c) {
			if slices.ContainsFunc(badItems, func(item string) bool { return strings.HasPrefix(p.Key, item) }) {
				continue
			}
			if !seen[p.Key] {
				seen[p.Key] = true
				v.problem(p.Key, "%s", p.Reason)
			}
		}
	}
	if len(d.probs) > 0 {
		d.probs.sortByLine()
		return nil, &d.probs
	}
	return c, nil
}

// safeParse runs go-yaml's parser; a panic inside it on hostile input is
// turned into an error so that a config never crashes the daemon.
func safeParse(data []byte) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("YAML syntax: cannot parse the document")
		}
	}()
	return parser.ParseBytes(data, 0)
}

// sortedMap iterates a map in key order, so problems come out stably.
func sortedMap[V any](m map[string]V) iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !yield(k, m[k]) {
				return
			}
		}
	}
}
