package configs

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/spoold/spoold/configs/secret"
	"github.com/spoold/spoold/configs/units"
)

// Print writes c as YAML in the schema's order, every key present, in the
// notation the file accepts (durations as 30s/5m/7d, dates as 2006-01-02),
// secrets as [redacted]. spoold -print-config uses it to show the effective
// configuration after every default.
func Print(w io.Writer, c *Config) error {
	var b bytes.Buffer
	p := printer{w: &b}
	p.mapping(reflect.ValueOf(c).Elem(), 0, false)
	if p.err != nil {
		return p.err
	}
	_, err := w.Write(b.Bytes())
	return err
}

type printer struct {
	w   *bytes.Buffer
	err error
}

// scalar renders a leaf value, or ok=false for a list, map or struct.
func (p *printer) scalar(v reflect.Value) (string, bool) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "", true // null: not set
		}
		return p.scalar(v.Elem())
	}
	switch v.Type() {
	case durationType:
		return units.FormatDuration(time.Duration(v.Int())), true
	case timeType:
		t := v.Interface().(time.Time)
		if t.IsZero() {
			return "", true // null: not set
		}
		return t.Format(time.DateOnly), true
	case secretType:
		return quote(v.Interface().(secret.Secret).String()), true
	case prefixType:
		return quote(v.Interface().(netip.Prefix).String()), true
	}
	switch v.Kind() {
	case reflect.String:
		if _, isEnum := v.Interface().(enum); isEnum && v.String() == "" {
			return "", true // null: an enum's "" is not a value the file may spell
		}
		return quote(v.String()), true
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), true
	case reflect.Int, reflect.Int64, reflect.Int32:
		return strconv.FormatInt(v.Int(), 10), true
	case reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64), true
	}
	return "", false
}

// quote leaves a string plain when YAML reads it back as the same string,
// and quotes it otherwise (empty, numbers, booleans, special characters).
func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, ":#{}[],&*!|>'\"%@`\n\t") && strings.TrimSpace(s) == s && !strings.HasPrefix(s, "-") {
		var back any
		if err := yaml.Unmarshal([]byte(s), &back); err == nil {
			if str, ok := back.(string); ok && str == s {
				return s
			}
		}
	}
	return strconv.Quote(s)
}

func (p *printer) line(indent int, format string, args ...any) {
	p.w.WriteString(strings.Repeat("  ", indent))
	fmt.Fprintf(p.w, format, args...)
	p.w.WriteByte('\n')
}

// mapping prints a struct's fields as key: value lines. inList puts the
// first key on the "- " line of a list item.
func (p *printer) mapping(v reflect.Value, indent int, inList bool) {
	t := v.Type()
	first := true
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		ind := indent
		prefix := ""
		if inList {
			if first {
				prefix = "- "
				ind = indent
			} else {
				ind = indent + 1
			}
		}
		first = false
		p.entry(v.Field(i), name, ind, prefix)
	}
}

// entry prints "key: value" or "key:" and a nested block.
func (p *printer) entry(v reflect.Value, key string, indent int, prefix string) {
	if s, ok := p.scalar(v); ok {
		if s == "" {
			p.line(indent, "%s%s:", prefix, quote(key))
			return
		}
		p.line(indent, "%s%s: %s", prefix, quote(key), s)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		p.line(indent, "%s%s:", prefix, quote(key))
		p.mapping(v, indent+1+btoi(prefix != ""), false)
	case reflect.Slice:
		if v.Len() == 0 {
			p.line(indent, "%s%s: []", prefix, quote(key))
			return
		}
		p.line(indent, "%s%s:", prefix, quote(key))
		for i := 0; i < v.Len(); i++ {
			p.item(v.Index(i), indent+1+btoi(prefix != ""))
		}
	case reflect.Map:
		if v.Len() == 0 {
			p.line(indent, "%s%s: {}", prefix, quote(key))
			return
		}
		p.line(indent, "%s%s:", prefix, quote(key))
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			p.entry(v.MapIndex(k), k.String(), indent+1+btoi(prefix != ""), "")
		}
	default:
		p.err = fmt.Errorf("configs: cannot print %s of kind %s", key, v.Kind())
	}
}

func (p *printer) item(v reflect.Value, indent int) {
	if s, ok := p.scalar(v); ok {
		p.line(indent, "- %s", s)
		return
	}
	if v.Kind() == reflect.Struct {
		p.mapping(v, indent, true)
		return
	}
	p.err = fmt.Errorf("configs: cannot print a list item of kind %s", v.Kind())
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
