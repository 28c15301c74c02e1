package cniinstall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/wirelace/wirelace/netconf"
)

// A JSONError is a CNI configuration that is not JSON a runtime would load,
// or not the shape of a CNI configuration. Offset counts bytes from 1, as
// json.SyntaxError does: the byte at which reading stopped.
type JSONError struct {
	Offset int64
	Line   int
	Column int
	Msg    string
}

func (e *JSONError) Error() string {
	return fmt.Sprintf("at byte offset %d (line %d, column %d): %s", e.Offset, e.Line, e.Column, e.Msg)
}

// jsonError builds a JSONError for the byte at 0-based index i of data.
func jsonError(data []byte, i int, format string, args ...any) *JSONError {
	i = min(max(i, 0), len(data))
	line := 1 + bytes.Count(data[:i], []byte("\n"))
	col := i - bytes.LastIndexByte(data[:i], '\n')
	return &JSONError{Offset: int64(i) + 1, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

// span is the bytes [start, end) of one JSON value in a document.
type span struct{ start, end int }

// element is one entry of a conflist's "plugins" array.
type element struct {
	span
	typ string // its "type", "" if it has none
}

// parsed is a CNI configuration as a token scan finds it: positions only,
// so that edits splice bytes and never re-marshal the document.
type parsed struct {
	object span            // the top-level object
	keys   map[string]span // value of each top-level key
	// For a conflist (a top-level "plugins" key): the offset of the
	// array's '[' and its elements in order.
	isList  bool
	open    int
	plugins []element
}

// parse scans a CNI configuration: a .conflist (an object with a "plugins"
// array of objects) or a single-plugin .conf (an object with a "type").
func parse(data []byte) (*parsed, error) {
	// Validate the whole input first: json.Unmarshal reports an absolute
	// offset and rejects trailing data, which a streaming Decoder does not.
	var whole json.RawMessage
	if err := json.Unmarshal(data, &whole); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, jsonError(data, int(se.Offset)-1, "%v", se)
		}
		return nil, jsonError(data, 0, "%v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, _ := dec.Token() // cannot fail: the input is valid
	if tok != json.Delim('{') {
		start := len(data) - len(bytes.TrimLeft(data, " \t\r\n"))
		return nil, jsonError(data, start, "a CNI configuration is a JSON object, not %s", kindOf(tok))
	}
	p := &parsed{keys: map[string]span{}}
	p.object.start = int(dec.InputOffset()) - 1
	for dec.More() {
		tok, _ = dec.Token()
		key := tok.(string) // an object key is always a string
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, jsonError(data, int(dec.InputOffset()), "%v", err)
		}
		end := int(dec.InputOffset())
		v := span{end - len(raw), end}
		if _, dup := p.keys[key]; dup && (key == "plugins" || key == "type") {
			// A runtime takes the last; an edit of either would be a guess.
			return nil, jsonError(data, v.start, "key %q appears twice", key)
		}
		p.keys[key] = v
	}
	dec.Token() // the closing '}'
	p.object.end = int(dec.InputOffset())

	v, ok := p.keys["plugins"]
	if !ok {
		if t, ok := p.keys["type"]; !ok || data[t.start] != '"' {
			return nil, jsonError(data, p.object.start, `neither a conflist (no "plugins" array) nor a single-plugin conf (no "type" string)`)
		}
		return p, nil
	}
	if data[v.start] != '[' {
		return nil, jsonError(data, v.start, `"plugins" is not an array`)
	}
	p.isList, p.open = true, v.start
	if err := p.scanPlugins(data, v); err != nil {
		return nil, err
	}
	return p, nil
}

// scanPlugins records the elements of the "plugins" array at v.
func (p *parsed) scanPlugins(data []byte, v span) error {
	dec := json.NewDecoder(bytes.NewReader(data[v.start:v.end]))
	dec.UseNumber()
	dec.Token() // '['
	for i := 0; dec.More(); i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return jsonError(data, v.start+int(dec.InputOffset()), "%v", err)
		}
		end := v.start + int(dec.InputOffset())
		e := element{span: span{end - len(raw), end}}
		var obj map[string]json.RawMessage
		if raw[0] != '{' || json.Unmarshal(raw, &obj) != nil {
			return jsonError(data, e.start, "plugins[%d] is not an object", i)
		}
		if t, ok := obj["type"]; ok {
			if err := json.Unmarshal(t, &e.typ); err != nil {
				return jsonError(data, e.start, `plugins[%d]: "type" is not a string`, i)
			}
		}
		p.plugins = append(p.plugins, e)
	}
	return nil
}

// kindOf names the JSON value a top-level token starts.
func kindOf(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		return "an array"
	case string:
		return "a string"
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("%v", t)
	default:
		return "a number"
	}
}

// has reports whether the configuration runs a plugin of type typ.
func (p *parsed) has(data []byte, typ string) bool {
	if !p.isList {
		var t string
		v := p.keys["type"]
		return json.Unmarshal(data[v.start:v.end], &t) == nil && t == typ
	}
	return p.index(typ) >= 0
}

// index is the position of the first plugin of type typ, or -1.
func (p *parsed) index(typ string) int {
	for i, e := range p.plugins {
		if e.typ == typ {
			return i
		}
	}
	return -1
}

// chainEntry is the plugin object chained mode appends.
type chainEntry struct {
	Type   string `json:"type"`
	Socket string `json:"socket"`
}

// Entry is the JSON text chained mode appends to the primary's plugins:
// {"type":"wirelace","socket":SOCKET}.
func Entry(socket string) []byte {
	b, _ := json.Marshal(chainEntry{Type: netconf.PluginType, Socket: socket})
	return b
}

// StandaloneConflist is the conflist standalone mode writes: Wirelace as the only
// plugin of network name, with its IPAM, both talking to wirelaced at
// socket.
func StandaloneConflist(name, socket string) []byte {
	type ipam struct {
		Type   string `json:"type"`
		Socket string `json:"socket"`
	}
	type plugin struct {
		Type   string `json:"type"`
		Socket string `json:"socket"`
		IPAM   ipam   `json:"ipam"`
	}
	b, _ := json.Marshal(struct {
		CNIVersion string   `json:"cniVersion"`
		Name       string   `json:"name"`
		Plugins    []plugin `json:"plugins"`
	}{
		CNIVersion: "1.1.0",
		Name:       name,
		Plugins: []plugin{{
			Type: netconf.PluginType, Socket: socket,
			IPAM: ipam{Type: netconf.IPAMType, Socket: socket},
		}},
	})
	return append(b, '\n')
}

// entryType reads the "type" of a plugin object given as JSON text.
func entryType(entry []byte) (string, error) {
	var e struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(entry, &e); err != nil || e.Type == "" {
		return "", fmt.Errorf("plugin entry %s is not a JSON object with a \"type\"", entry)
	}
	return e.Type, nil
}

// HasPlugin reports whether the CNI configuration data (a conflist or a
// single-plugin conf) runs a plugin of type typ.
func HasPlugin(data []byte, typ string) (bool, error) {
	p, err := parse(data)
	if err != nil {
		return false, err
	}
	return p.has(data, typ), nil
}

// Insert appends entry, a plugin object as JSON text, as the last plugin of
// the conflist data. Every other byte of data is kept: the entry is spliced
// in after the last plugin, preceded by ',' and the whitespace that precedes
// the first plugin, so an indented file stays indented and a compact one
// compact. If a plugin of the entry's type is already there, data is
// returned unchanged. A single-plugin conf is an error: see Convert.
func Insert(data, entry []byte) ([]byte, error) {
	typ, err := entryType(entry)
	if err != nil {
		return nil, err
	}
	p, err := parse(data)
	if err != nil {
		return nil, err
	}
	if !p.isList {
		return nil, errors.New(`a single-plugin conf has no "plugins" list to insert into: convert it to a conflist`)
	}
	if p.has(data, typ) {
		return data, nil
	}
	var at int
	var text []byte
	if n := len(p.plugins); n == 0 {
		at, text = p.open+1, entry
	} else {
		indent := data[p.open+1 : p.plugins[0].start]
		at = p.plugins[n-1].end
		text = append(append([]byte{','}, indent...), entry...)
	}
	return splice(data, at, at, text), nil
}

// Remove takes every plugin of type typ out of the conflist data, undoing
// Insert exactly: Remove(Insert(d, e), type of e) == d. Other bytes are kept.
func Remove(data []byte, typ string) ([]byte, error) {
	for {
		p, err := parse(data)
		if err != nil {
			return nil, err
		}
		i := p.index(typ)
		if !p.isList || i < 0 {
			return data, nil
		}
		e := p.plugins[i]
		switch {
		case i > 0: // with the ',' and whitespace after the previous plugin
			data = splice(data, p.plugins[i-1].end, e.end, nil)
		case len(p.plugins) > 1: // first of several: up to the next one
			data = splice(data, e.start, p.plugins[1].start, nil)
		default:
			data = splice(data, e.start, e.end, nil)
		}
	}
}

// Convert turns a single-plugin conf into a conflist that runs the conf's
// plugin, its object bytes verbatim, then entry:
// {"cniVersion":V,"name":N,"plugins":[CONF,ENTRY]}, with V and N the conf's
// own (left out if the conf has none).
func Convert(conf, entry []byte) ([]byte, error) {
	if _, err := entryType(entry); err != nil {
		return nil, err
	}
	p, err := parse(conf)
	if err != nil {
		return nil, err
	}
	if p.isList {
		return nil, errors.New("already a conflist: insert into it instead")
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for _, k := range []string{"cniVersion", "name"} {
		if v, ok := p.keys[k]; ok {
			fmt.Fprintf(&b, "%q:%s,", k, conf[v.start:v.end])
		}
	}
	b.WriteString(`"plugins":[`)
	b.Write(conf[p.object.start:p.object.end])
	b.WriteByte(',')
	b.Write(entry)
	b.WriteString("]}\n")
	return b.Bytes(), nil
}

// splice returns data with [from, to) replaced by text, in a new slice.
func splice(data []byte, from, to int, text []byte) []byte {
	out := make([]byte, 0, len(data)-(to-from)+len(text))
	out = append(out, data[:from]...)
	out = append(out, text...)
	return append(out, data[to:]...)
}
