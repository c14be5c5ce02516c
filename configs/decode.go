package configs

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/configs/secret"
	"github.com/spoold/spoold/configs/units"
)

// Decoding walks go-yaml's AST against the Config struct by reflection
// instead of calling yaml.Unmarshal once: Unmarshal stops at the first error,
// while spoold -check must list every unknown key and bad value, each with
// its own line and dotted key. Scalars of basic kinds are still converted by
// go-yaml (NodeToValue with yaml.Strict()); the walker owns structure,
// unknown keys and the spoold value types (durations with d, sizes, CIDRs,
// dates, enums, secrets). In the schema every int64 field is a byte size.

const (
	maxConfigSize = 4 << 20 // a config is a few KiB; refuse anything absurd
	nodeBudget    = 200_000 // bounds alias expansion ("billion laughs")
	maxProblems   = 500
)

type decoder struct {
	file    string
	probs   Problems
	lines   map[string]int  // dotted key -> line of the key (or list item)
	bad     map[string]bool // keys with a decode problem: skip semantic checks there
	anchors map[string]ast.Node
	budget  int
	full    bool
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, lines: map[string]int{}, bad: map[string]bool{}, anchors: map[string]ast.Node{}, budget: nodeBudget}
}

func (d *decoder) add(line int, key, format string, args ...any) {
	if d.full {
		return
	}
	if len(d.probs) >= maxProblems {
		d.full = true
		d.probs = append(d.probs, Problem{File: d.file, Line: line, Key: key, Reason: "too many problems; stopping here"})
		return
	}
	d.probs = append(d.probs, Problem{File: d.file, Line: line, Key: key, Reason: fmt.Sprintf(format, args...)})
}

// decodeErr records a decode problem and marks the key so that semantic
// checks do not pile a second complaint onto it.
func (d *decoder) decodeErr(n ast.Node, key, format string, args ...any) {
	d.bad[key] = true
	d.add(nodeLine(n), key, format, args...)
}

func nodeLine(n ast.Node) int {
	if n == nil {
		return 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

// lineOf returns the line of key, or of its nearest enclosing key that is
// present in the file (a missing key is reported where its section is).
func (d *decoder) lineOf(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// collectAnchors records every anchor first, so aliases resolve even when
// the anchor sits under a key the walker does not descend into.
type anchorVisitor struct{ d *decoder }

func (v anchorVisitor) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		v.d.anchors[a.Name.GetToken().Value] = a.Value
	}
	return v
}

// resolve strips anchors and tags and follows aliases.
func (d *decoder) resolve(n ast.Node, key string) (ast.Node, bool) {
	for i := 0; i < 64; i++ {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.AliasNode:
			name := ""
			if v.Value != nil && v.Value.GetToken() != nil {
				name = v.Value.GetToken().Value
			}
			target, ok := d.anchors[name]
			if !ok {
				d.decodeErr(v, key, "alias *%s refers to no anchor", name)
				return nil, false
			}
			n = target
		default:
			return n, true
		}
	}
	d.decodeErr(n, key, "alias chain too long")
	return nil, false
}

func kindName(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", field.Clip(scalarText(n)))
	}
}

func isScalar(n ast.Node) bool {
	switch n.(type) {
	case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.LiteralNode, *ast.InfinityNode, *ast.NanNode:
		return true
	}
	return false
}

// scalarText is the text of a scalar as written (for literals, the content).
func scalarText(n ast.Node) string {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value
	case *ast.LiteralNode:
		if v.Value != nil {
			return v.Value.Value
		}
		return ""
	}
	if n != nil && n.GetToken() != nil {
		return n.GetToken().Value
	}
	return ""
}

// pairs returns a mapping's key/value pairs (merge keys "<<" first, so that
// explicit keys override merged ones).
func (d *decoder) pairs(n ast.Node, key string, depth int) []*ast.MappingValueNode {
	var m []*ast.MappingValueNode
	switch v := n.(type) {
	case *ast.MappingNode:
		m = v.Values
	case *ast.MappingValueNode:
		m = []*ast.MappingValueNode{v}
	}
	var merged, own []*ast.MappingValueNode
	for _, p := range m {
		if _, ok := p.Key.(*ast.MergeKeyNode); ok {
			if depth > 8 {
				d.decodeErr(p, key, "merge keys nested too deeply")
				continue
			}
			src, ok := d.resolve(p.Value, key)
			if !ok {
				continue
			}
			srcs := []ast.Node{src}
			if seq, isSeq := src.(*ast.SequenceNode); isSeq {
				srcs = seq.Values
			}
			for _, s := range srcs {
				s, ok := d.resolve(s, key)
				if !ok {
					continue
				}
				if !isMapping(s) {
					d.decodeErr(p, key, "merge key << wants a mapping or a list of mappings")
					continue
				}
				merged = append(merged, d.pairs(s, key, depth+1)...)
			}
			continue
		}
		own = append(own, p)
	}
	return append(merged, own...)
}

func isMapping(n ast.Node) bool {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return true
	}
	return false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
	timeType     = reflect.TypeFor[time.Time]()
	secretType   = reflect.TypeFor[secret.Secret]()
	enumType     = reflect.TypeFor[enum]()
)

// value decodes n into v; key is the dotted path of v.
func (d *decoder) value(n ast.Node, v reflect.Value, key string) {
	if d.budget--; d.budget < 0 {
		if d.budget == -1 {
			d.add(nodeLine(n), key, "document is too large or expands too many aliases")
		}
		return
	}
	n, ok := d.resolve(n, key)
	if !ok {
		return
	}
	if _, null := n.(*ast.NullNode); null || n == nil {
		return // an empty value keeps the default
	}
	t := v.Type()
	switch {
	case t == durationType:
		d.scalar(n, key, "a duration like 30s, 5m, 24h or 5d", setParsed(v, units.ParseDuration))
		return
	case t == prefixType:
		d.scalar(n, key, "a network like 10.0.0.0/8 or an IP address", setParsed(v, parsePrefix))
		return
	case t == timeType:
		d.scalar(n, key, "a date like 2027-06-30", setParsed(v, parseDate))
		return
	case t == secretType:
		// Any scalar is accepted and never echoed back in a problem.
		if !isScalar(n) {
			d.decodeErr(n, key, "want a string, got %s", structuralName(n))
			return
		}
		v.SetString(scalarText(n))
		return
	case t.Kind() == reflect.String && t.Implements(enumType):
		d.scalar(n, key, "a string", func(s string) error {
			if err := checkEnum(v.Interface().(enum), s); err != nil {
				return err
			}
			v.SetString(s)
			return nil
		})
		return
	case t.Kind() == reflect.Int64:
		d.scalar(n, key, "a size like 35MB, 20MiB or 1048576", setParsed(v, ParseSize))
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		// An optional value: nil when absent, so the subsystem that owns
		// the default can tell "not set" from an explicit false or zero.
		elem := reflect.New(t.Elem())
		d.value(n, elem.Elem(), key)
		if !d.bad[key] {
			v.Set(elem)
		}
	case reflect.Struct:
		d.structure(n, v, key)
	case reflect.Slice:
		d.slice(n, v, key)
	case reflect.Map:
		d.mapping(n, v, key)
	case reflect.String, reflect.Bool, reflect.Int, reflect.Float64:
		d.basic(n, v, key)
	default:
		// Unreachable with the schema in this package.
		d.decodeErr(n, key, "unsupported field type %s", t)
	}
}

func structuralName(n ast.Node) string {
	if isMapping(n) {
		return "a mapping"
	}
	if _, ok := n.(*ast.SequenceNode); ok {
		return "a list"
	}
	return "a non-scalar value"
}

// scalar requires a scalar and hands its text to parse.
func (d *decoder) scalar(n ast.Node, key, want string, parse func(string) error) {
	if !isScalar(n) {
		d.decodeErr(n, key, "want %s, got %s", want, structuralName(n))
		return
	}
	if err := parse(scalarText(n)); err != nil {
		d.decodeErr(n, key, "%v", err)
	}
}

// setParsed is a scalar parser for d.scalar that stores what parse makes
// of the text in v (converted to v's type: sizes are int64 kinds).
func setParsed[T any](v reflect.Value, parse func(string) (T, error)) func(string) error {
	return func(s string) error {
		x, err := parse(s)
		if err == nil {
			v.Set(reflect.ValueOf(x).Convert(v.Type()))
		}
		return err
	}
}

func (d *decoder) basic(n ast.Node, v reflect.Value, key string) {
	want := map[reflect.Kind]string{
		reflect.String: "a string", reflect.Bool: "true or false",
		reflect.Int: "an integer", reflect.Float64: "a number",
	}[v.Kind()]
	if !isScalar(n) {
		d.decodeErr(n, key, "want %s, got %s", want, structuralName(n))
		return
	}
	if v.Kind() == reflect.String {
		// Keep the text as written ("0x10" stays "0x10", 1.50 stays "1.50").
		v.SetString(scalarText(n))
		return
	}
	if v.Kind() == reflect.Bool {
		if _, ok := n.(*ast.BoolNode); !ok {
			d.decodeErr(n, key, "want true or false, got %s", kindName(n))
			return
		}
	}
	tmp := reflect.New(v.Type())
	if err := safeNodeToValue(n, tmp.Interface()); err != nil {
		d.decodeErr(n, key, "want %s, got %s", want, kindName(n))
		return
	}
	v.Set(tmp.Elem())
}

// safeNodeToValue converts a scalar with go-yaml in strict mode; a panic
// inside the library on hostile input becomes an error, not a crash.
func safeNodeToValue(n ast.Node, ptr any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot convert value")
		}
	}()
	return yaml.NodeToValue(n, ptr, yaml.Strict())
}

type fieldInfo struct {
	index int
	name  string
}

func yamlFields(t reflect.Type) ([]fieldInfo, map[string]int) {
	var list []fieldInfo
	byName := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		byName[name] = i
		list = append(list, fieldInfo{i, name})
	}
	return list, byName
}

// entries calls each, in order, for every entry of the mapping n at key
// whose key resolves to a plain string, with the entry's dotted key; other
// keys are problems. It reports false, and a problem, if n is no mapping.
func (d *decoder) entries(n ast.Node, key string, each func(name, ekey string, kn, value ast.Node)) bool {
	if !isMapping(n) {
		d.decodeErr(n, key, "want a mapping, got %s", kindName(n))
		return false
	}
	for _, p := range d.pairs(n, key, 0) {
		kn, ok := d.resolve(p.Key, key)
		if !ok {
			continue
		}
		if !isScalar(kn) {
			d.decodeErr(p, key, "keys must be plain strings")
			continue
		}
		name := scalarText(kn)
		each(name, join(key, name), kn, p.Value)
	}
	return true
}

func (d *decoder) structure(n ast.Node, v reflect.Value, key string) {
	fields, byName := yamlFields(v.Type())
	d.entries(n, key, func(name, fkey string, kn, value ast.Node) {
		if _, seen := d.lines[fkey]; !seen {
			d.lines[fkey] = nodeLine(kn)
		}
		i, ok := byName[name]
		if !ok {
			d.decodeErr(kn, fkey, "%s", unknownKey(name, fields))
			return
		}
		d.value(value, v.Field(i), fkey)
	})
}

func unknownKey(name string, fields []fieldInfo) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	if best := field.Suggest(name, names); best != "" {
		return fmt.Sprintf("unknown key %q (did you mean %q?)", field.Clip(name), best)
	}
	return fmt.Sprintf("unknown key %q", field.Clip(name))
}

func (d *decoder) slice(n ast.Node, v reflect.Value, key string) {
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.decodeErr(n, key, "want a list, got %s", kindName(n))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
	for i, item := range seq.Values {
		ikey := fmt.Sprintf("%s[%d]", key, i)
		d.lines[ikey] = nodeLine(item)
		d.value(item, out.Index(i), ikey)
	}
	v.Set(out)
}

func (d *decoder) mapping(n ast.Node, v reflect.Value, key string) {
	out := reflect.MakeMap(v.Type())
	if d.entries(n, key, func(name, ekey string, kn, value ast.Node) {
		d.lines[ekey] = nodeLine(kn)
		elem := reflect.New(v.Type().Elem()).Elem()
		d.value(value, elem, ekey)
		out.SetMapIndex(reflect.ValueOf(name), elem)
	}) {
		v.Set(out)
	}
}

// parsePrefix accepts a CIDR or a bare IP (a single host: /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network: want a CIDR like 192.168.1.0/24 or an IP address", field.Clip(s))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network: want a CIDR like 192.168.1.0/24 or an IP address", field.Clip(s))
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseDate accepts 2006-01-02 (midnight UTC) or RFC 3339.
func parseDate(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a date: want YYYY-MM-DD, e.g. 2027-06-30", field.Clip(s))
}
