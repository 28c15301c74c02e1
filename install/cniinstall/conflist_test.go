package cniinstall

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

// ciliumConflist is testdata/05-cilium.conflist, byte for byte what the
// Cilium agent writes to /etc/cni/net.d/05-cilium.conflist by default: the
// "none" entry of cniConfigs in cilium/cilium daemon/cmd/cni/config.go,
// rendered by its text/template with enable-debug=false and the default
// cni-log-file /var/run/cilium/cilium-cni.log (daemon/cmd/cni/cell.go) and
// written with renameio. The template starts with a newline and ends
// without one; both are kept here on purpose.
const ciliumConflist = "\n{\n  \"cniVersion\": \"0.3.1\",\n  \"name\": \"cilium\",\n  \"plugins\": [\n    {\n       \"type\": \"cilium-cni\",\n       \"enable-debug\": false,\n       \"log-file\": \"/var/run/cilium/cilium-cni.log\"\n    }\n  ]\n}"

const testSocket = "/run/wirelace/wirelaced.sock"

// entry is what chained mode appends, spelled out: the format is a contract
// with the plugin.
const entry = `{"type":"wirelace","socket":"/run/wirelace/wirelaced.sock"}`

func TestFixtureIsCiliums(t *testing.T) {
	b, err := os.ReadFile("testdata/05-cilium.conflist")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != ciliumConflist {
		t.Fatalf("testdata/05-cilium.conflist is not what Cilium writes:\n%q\nwant\n%q", b, ciliumConflist)
	}
}

func TestEntryAndStandalone(t *testing.T) {
	if got := string(Entry(testSocket)); got != entry {
		t.Errorf("Entry = %s, want %s", got, entry)
	}
	want := `{"cniVersion":"1.1.0","name":"wirelace","plugins":[{"type":"wirelace","socket":"/run/wirelace/wirelaced.sock","ipam":{"type":"wirelace-ipam","socket":"/run/wirelace/wirelaced.sock"}}]}` + "\n"
	got := StandaloneConflist("wirelace", testSocket)
	if string(got) != want {
		t.Errorf("StandaloneConflist =\n%s\nwant\n%s", got, want)
	}
	list, err := libcni.ConfListFromBytes(got)
	if err != nil || list.CNIVersion != "1.1.0" || len(list.Plugins) != 1 || list.Plugins[0].Network.Type != "wirelace" {
		t.Errorf("libcni reads the standalone conflist as %+v, %v", list, err)
	}
}

func TestInsert(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{{
		name: "cilium as the agent writes it",
		in:   ciliumConflist,
		want: "\n{\n  \"cniVersion\": \"0.3.1\",\n  \"name\": \"cilium\",\n  \"plugins\": [\n    {\n       \"type\": \"cilium-cni\",\n       \"enable-debug\": false,\n       \"log-file\": \"/var/run/cilium/cilium-cni.log\"\n    },\n    " + entry + "\n  ]\n}",
	}, {
		name: "compact one line",
		in:   `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap"}]}`,
		want: `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap"},` + entry + `]}`,
	}, {
		name: "trailing newline kept",
		in:   `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}` + "\n\n",
		want: `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},` + entry + `]}` + "\n\n",
	}, {
		name: "CRLF and tabs",
		in:   "{\r\n\t\"cniVersion\": \"0.4.0\",\r\n\t\"name\": \"n\",\r\n\t\"plugins\": [\r\n\t\t{\"type\": \"ptp\"},\r\n\t\t{\"type\": \"portmap\", \"capabilities\": {\"portMappings\": true}}\r\n\t]\r\n}\r\n",
		want: "{\r\n\t\"cniVersion\": \"0.4.0\",\r\n\t\"name\": \"n\",\r\n\t\"plugins\": [\r\n\t\t{\"type\": \"ptp\"},\r\n\t\t{\"type\": \"portmap\", \"capabilities\": {\"portMappings\": true}},\r\n\t\t" + entry + "\r\n\t]\r\n}\r\n",
	}, {
		name: "spaces around commas",
		in:   `{ "cniVersion" : "1.0.0" , "name" : "n" , "plugins" : [ {"type":"a"} , {"type":"b"} ] }`,
		want: `{ "cniVersion" : "1.0.0" , "name" : "n" , "plugins" : [ {"type":"a"} , {"type":"b"}, ` + entry + ` ] }`,
	}, {
		name: "nested arrays before plugins",
		in:   `{"cniVersion":"1.0.0","name":"n","dns":{"nameservers":["10.0.0.10"],"search":[]},"matrix":[[1,2],[3,[4,[]]]],"plugins":[{"type":"bridge","ipam":{"ranges":[[{"subnet":"10.1.0.0/16"}]]}}]}`,
		want: `{"cniVersion":"1.0.0","name":"n","dns":{"nameservers":["10.0.0.10"],"search":[]},"matrix":[[1,2],[3,[4,[]]]],"plugins":[{"type":"bridge","ipam":{"ranges":[[{"subnet":"10.1.0.0/16"}]]}},` + entry + `]}`,
	}, {
		name: "plugins not the last key",
		in:   `{"plugins":[{"type":"bridge"}],"cniVersion":"1.0.0","name":"n","disableCheck":true,"extra":[1,[2]]}`,
		want: `{"plugins":[{"type":"bridge"},` + entry + `],"cniVersion":"1.0.0","name":"n","disableCheck":true,"extra":[1,[2]]}`,
	}, {
		name: "escaped strings that look like structure",
		in:   `{"cniVersion":"1.0.0","name":"a\"],\u005d\\","plugins":[{"type":"bridge","note":"\"plugins\": [\"x\"] }"}],"z":"]"}`,
		want: `{"cniVersion":"1.0.0","name":"a\"],\u005d\\","plugins":[{"type":"bridge","note":"\"plugins\": [\"x\"] }"},` + entry + `],"z":"]"}`,
	}, {
		name: "a nested plugins key is not the list",
		in:   `{"cniVersion":"1.0.0","name":"n","meta":{"plugins":[{"type":"decoy"}]},"plugins":[{"type":"bridge"}]}`,
		want: `{"cniVersion":"1.0.0","name":"n","meta":{"plugins":[{"type":"decoy"}]},"plugins":[{"type":"bridge"},` + entry + `]}`,
	}, {
		name: "numbers and unicode kept as written",
		in:   `{"cniVersion":"1.0.0","name":"réseau","plugins":[{"type":"bridge","mtu":1.50e3,"big":12345678901234567890,"x":-0.0}]}`,
		want: `{"cniVersion":"1.0.0","name":"réseau","plugins":[{"type":"bridge","mtu":1.50e3,"big":12345678901234567890,"x":-0.0},` + entry + `]}`,
	}, {
		name: "empty plugins list",
		in:   `{"cniVersion":"1.0.0","name":"n","plugins":[]}`,
		want: `{"cniVersion":"1.0.0","name":"n","plugins":[` + entry + `]}`,
	}, {
		name: "empty plugins list with whitespace",
		in:   "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"plugins\":[\n  ]}",
		want: "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"plugins\":[" + entry + "\n  ]}",
	}, {
		name: "wirelace already last",
		in:   `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},` + entry + `]}`,
		want: `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},` + entry + `]}`,
	}, {
		name: "wirelace already there, not last, other socket",
		in:   `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"socket":"/x.sock","type":"wirelace"},{"type":"portmap"}]}`,
		want: `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"socket":"/x.sock","type":"wirelace"},{"type":"portmap"}]}`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Insert([]byte(tc.in), []byte(entry))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("Insert =\n%q\nwant\n%q", got, tc.want)
			}
			// Idempotent: a second insert changes nothing.
			again, err := Insert(got, []byte(entry))
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("second Insert changed the file:\n%q\n%v", again, err)
			}
			// What runtimes make of it: wirelace last, cniVersion kept.
			var in struct{ CNIVersion string }
			json.Unmarshal([]byte(tc.in), &in)
			list, err := libcni.ConfListFromBytes(got)
			if err != nil {
				t.Fatalf("libcni cannot load the result: %v", err)
			}
			if list.CNIVersion != in.CNIVersion {
				t.Errorf("cniVersion %q, want the primary's %q", list.CNIVersion, in.CNIVersion)
			}
			if has, _ := HasPlugin(got, "wirelace"); !has {
				t.Errorf("no wirelace plugin after insert")
			}
			if n := len(list.Plugins); tc.in != tc.want && list.Plugins[n-1].Network.Type != "wirelace" {
				t.Errorf("last plugin after insert: %+v", list.Plugins[n-1].Network)
			}
			// Remove undoes Insert exactly.
			if tc.in != tc.want {
				back, err := Remove(got, "wirelace")
				if err != nil || string(back) != tc.in {
					t.Errorf("Remove(Insert(x)) =\n%q, %v\nwant\n%q", back, err, tc.in)
				}
			}
		})
	}
}

func TestInsertErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		offset   int64 // 0: not checked
		want     string
	}{
		{"empty file", "", 0, "unexpected end of JSON input"},
		{"truncated", `{"cniVersion":"1.0.0","plugins":[{"type":"a"}`, 45, "unexpected end of JSON input"},
		{"bad character", `{"name":"x",}`, 13, "invalid character '}'"},
		{"trailing garbage", `{"name":"n","plugins":[]} x`, 27, "after top-level value"},
		{"two documents", `{"name":"n","plugins":[]}{"name":"m","plugins":[]}`, 26, "after top-level value"},
		{"top level is an array", ` [{"type":"bridge"}]`, 2, "a CNI configuration is a JSON object, not an array"},
		{"top level is a string", `"plugins"`, 1, "not a string"},
		{"plugins is an object", `{"name":"n","plugins":{"type":"bridge"}}`, 23, `"plugins" is not an array`},
		{"plugins is null", `{"name":"n","plugins":null}`, 23, `"plugins" is not an array`},
		{"plugin is a string", `{"name":"n","plugins":[{"type":"a"}, "bridge"]}`, 38, "plugins[1] is not an object"},
		{"plugin type is a number", `{"name":"n","plugins":[{"type":1}]}`, 24, `plugins[0]: "type" is not a string`},
		{"plugins twice", `{"name":"n","plugins":[],"plugins":[{"type":"a"}]}`, 36, `key "plugins" appears twice`},
		{"neither list nor conf", `{"name":"n","cniVersion":"1.0.0"}`, 1, "neither a conflist"},
		{"single-plugin conf", `{"name":"n","type":"bridge"}`, 0, "convert it to a conflist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Insert([]byte(tc.in), []byte(entry))
			if err == nil {
				t.Fatalf("Insert = %q, want an error", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			var je *JSONError
			if tc.offset != 0 && (!errors.As(err, &je) || je.Offset != tc.offset) {
				t.Errorf("error %q: want byte offset %d", err, tc.offset)
			}
		})
	}
}

func TestJSONErrorPosition(t *testing.T) {
	_, err := Insert([]byte("{\n  \"name\": \"n\",\n  \"plugins\": [\n    {\"type\": \"a\"}\n    {\"type\": \"b\"}\n  ]\n}\n"), []byte(entry))
	var je *JSONError
	if !errors.As(err, &je) || je.Line != 5 || je.Column != 5 {
		t.Fatalf("error %v, want it at line 5, column 5", err)
	}
	if !strings.Contains(err.Error(), "line 5, column 5") {
		t.Errorf("error %q does not say where", err)
	}
}

func TestConvert(t *testing.T) {
	conf, err := os.ReadFile("testdata/10-bridge.conf")
	if err != nil {
		t.Fatal(err)
	}
	out, err := Convert(conf, []byte(entry))
	if err != nil {
		t.Fatal(err)
	}
	obj := bytes.TrimSpace(conf)
	want := `{"cniVersion":"0.4.0","name":"mynet","plugins":[` + string(obj) + `,` + entry + "]}\n"
	if string(out) != want {
		t.Fatalf("Convert =\n%s\nwant\n%s", out, want)
	}
	list, err := libcni.ConfListFromBytes(out)
	if err != nil {
		t.Fatal(err)
	}
	if list.CNIVersion != "0.4.0" || list.Name != "mynet" || len(list.Plugins) != 2 ||
		list.Plugins[0].Network.Type != "bridge" || list.Plugins[1].Network.Type != "wirelace" {
		t.Errorf("libcni reads the converted conflist as %s %s %+v", list.CNIVersion, list.Name, list.Plugins)
	}
	if has, err := HasPlugin(out, "wirelace"); !has || err != nil {
		t.Errorf("HasPlugin(converted) = %v, %v", has, err)
	}

	// Without cniVersion and name, the conflist has none either.
	out, err = Convert([]byte(`{"type":"ptp"}`), []byte(entry))
	if err != nil || string(out) != `{"plugins":[{"type":"ptp"},`+entry+"]}\n" {
		t.Errorf("Convert(bare conf) = %s, %v", out, err)
	}
	if _, err := Convert([]byte(ciliumConflist), []byte(entry)); err == nil {
		t.Error("Convert accepted a conflist")
	}
}

func TestRemove(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"someone appended after us",
			`{"plugins":[{"type":"a"},` + entry + `,{"type":"istio-cni"}]}`,
			`{"plugins":[{"type":"a"},{"type":"istio-cni"}]}`},
		{"first of several",
			`{"plugins":[ ` + entry + ` , {"type":"a"} ]}`,
			`{"plugins":[ {"type":"a"} ]}`},
		{"twice",
			`{"plugins":[{"type":"a"},` + entry + `,` + entry + `]}`,
			`{"plugins":[{"type":"a"}]}`},
		{"absent", `{"plugins":[{"type":"a"}]}`, `{"plugins":[{"type":"a"}]}`},
		{"a conf", `{"type":"wirelace"}`, `{"type":"wirelace"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Remove([]byte(tc.in), "wirelace")
			if err != nil || string(got) != tc.want {
				t.Errorf("Remove =\n%s, %v\nwant\n%s", got, err, tc.want)
			}
		})
	}
}

func TestHasPlugin(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{ciliumConflist, false},
		{`{"plugins":[{"type":"a"},` + entry + `]}`, true},
		{`{"plugins":[{"Type":"wirelace"}]}`, false}, // keys are case-sensitive for runtimes' purposes
		{`{"type":"wirelace","name":"n"}`, true},
		{`{"type":"bridge","name":"n"}`, false},
	} {
		if got, err := HasPlugin([]byte(tc.in), "wirelace"); got != tc.want || err != nil {
			t.Errorf("HasPlugin(%s) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestPickPrimary(t *testing.T) {
	for _, tc := range []struct {
		name      string
		files     []string
		want      string
		converted map[string]string
		pick      string
		err       string
	}{
		{name: "first by name", files: []string{"10-flannel.conflist", "05-cilium.conflist", "99-loopback.conf"}, pick: "05-cilium.conflist"},
		{name: ".conf sorts before .conflist of the same stem", files: []string{"05-foo.conflist", "05-foo.conf"}, pick: "05-foo.conf"},
		{name: ".json counts", files: []string{"20-x.json", "30-y.conf"}, pick: "20-x.json"},
		{name: "other files ignored", files: []string{"00-a.conf.cilium_bak", "01-b.conf.wirelace-orig", "README", "10-c.conflist"}, pick: "10-c.conflist"},
		{name: "named", files: []string{"05-a.conflist", "10-b.conflist"}, want: "10-b.conflist", pick: "10-b.conflist"},
		{name: "named and converted", files: []string{"05-foo.conflist", "05-foo.conf.wirelace-orig"}, want: "05-foo.conf", converted: map[string]string{"05-foo.conf": "05-foo.conflist"}, pick: "05-foo.conflist"},
		{name: "named and missing", files: []string{"05-a.conflist"}, want: "10-b.conflist", err: "primary CNI config 10-b.conflist not found in /etc/cni/net.d (it holds 05-a.conflist)"},
		{name: "none", files: []string{"05-cilium.conflist.cilium_bak"}, err: "no primary CNI config in /etc/cni/net.d: no file ends in .conf, .conflist or .json (it holds 05-cilium.conflist.cilium_bak)"},
		{name: "empty", err: "(it is empty)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pickPrimary("/etc/cni/net.d", tc.files, tc.files, tc.want, tc.converted)
			if tc.err != "" {
				var np *NoPrimaryError
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &np) {
					t.Fatalf("pickPrimary = %q, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.pick {
				t.Errorf("pickPrimary = %q, %v; want %q", got, err, tc.pick)
			}
		})
	}
}

func TestConflistName(t *testing.T) {
	for in, want := range map[string]string{"05-foo.conf": "05-foo.conflist", "10-x.json": "10-x.conflist", "a.b.conf": "a.b.conflist"} {
		if got := conflistName(in); got != want {
			t.Errorf("conflistName(%s) = %s, want %s", in, got, want)
		}
	}
}
