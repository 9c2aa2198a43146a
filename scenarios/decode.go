package scenarios

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a scenario, located by file, line and field.
type Problem struct {
	File  string
	Line  int // 0: unknown; -1: came from a --set override
	Field string
	Msg   string
}

func (p *Problem) Error() string {
	loc := p.File
	switch {
	case p.Line > 0:
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	case p.Line < 0:
		loc = p.File + " (--set)"
	}
	if p.Field == "" {
		return loc + ": " + p.Msg
	}
	return fmt.Sprintf("%s: %s: %s", loc, p.Field, p.Msg)
}

// Problems is every problem found in one pass over a scenario; it is the error type for bad input.
type Problems []*Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// fieldErr is a problem inside a node that decodes itself, at a line and a sub-field.
type fieldErr struct {
	line  int
	field string
	msg   string
}

type fieldErrs []fieldErr

func (fe fieldErrs) Error() string {
	parts := make([]string, len(fe))
	for i, e := range fe {
		parts[i] = fmt.Sprintf("line %d: %s: %s", e.line, e.field, e.msg)
	}
	return strings.Join(parts, "; ")
}

// nodeDecoder is implemented by types that read themselves from a YAML node.
type nodeDecoder interface {
	decodeNode(n *yaml.Node) error
}

// decoder walks a YAML node tree against a Go struct, strictly: unknown keys, duplicate keys and wrong
// types are problems, all collected in one pass.
type decoder struct {
	file     string
	problems Problems
	// present maps each field path found in the file to its line, so that defaults apply only to what
	// was left out and validation can point at lines.
	present map[string]int
}

func (d *decoder) add(line int, field, format string, args ...any) {
	d.problems = append(d.problems, &Problem{File: d.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.present[path] = n.Line
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
		if err := nd.decodeNode(n); err != nil {
			var fes fieldErrs
			if errors.As(err, &fes) {
				for _, fe := range fes {
					d.add(fe.line, join(path, fe.field), "%s", fe.msg)
				}
			} else {
				d.add(n.Line, path, "%v", err)
			}
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.add(n.Line, path, "must be a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
			if f, ok := s.Index(i).Addr().Interface().(*Fault); ok {
				f.Line = c.Line
			}
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.add(n.Line, path, "must be a mapping of names to values")
			return
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				d.add(k.Line, join(path, k.Value), "is given twice")
				continue
			}
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, e, join(path, k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value), e)
		}
		v.Set(m)
	default:
		d.decodeScalar(n, v, path)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.add(n.Line, path, "must be a mapping with keys %s", strings.Join(fieldNames(v.Type()), ", "))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		fp := join(path, k.Value)
		if seen[k.Value] {
			d.add(k.Line, fp, "is given twice")
			continue
		}
		seen[k.Value] = true
		idx := fieldIndex(v.Type(), k.Value)
		if idx < 0 {
			where := path
			if where == "" {
				where = "the top level"
			}
			d.add(k.Line, fp, "unknown field; valid at %s: %s", where, strings.Join(fieldNames(v.Type()), ", "))
			continue
		}
		d.decode(val, v.Field(idx), fp)
	}
}

func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.add(n.Line, path, "must be a single value, not a list or mapping")
		return
	}
	s := n.Value
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int, reflect.Int64:
		x, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
		if err != nil {
			d.add(n.Line, path, "%q is not a whole number", s)
			return
		}
		v.SetInt(x)
	case reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			d.add(n.Line, path, "%q is not a number", s)
			return
		}
		v.SetFloat(x)
	case reflect.Bool:
		x, err := strconv.ParseBool(s)
		if err != nil {
			d.add(n.Line, path, "%q is not true or false", s)
			return
		}
		v.SetBool(x)
	default:
		d.add(n.Line, path, "cannot be decoded (internal: %s)", v.Kind())
	}
}

func fieldIndex(t reflect.Type, name string) int {
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == name && tag != "-" {
			return i
		}
	}
	return -1
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag != "" && tag != "-" {
			names = append(names, tag)
		}
	}
	sort.Strings(names)
	return names
}
