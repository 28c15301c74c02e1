package config

import (
	"strings"
	"testing"
)

func TestNodeListenPort(t *testing.T) {
	for _, tc := range []struct {
		annotations map[string]string
		port        int
		set         bool
		err         string
	}{
		{annotations: nil},
		{annotations: map[string]string{"other": "1"}},
		{annotations: map[string]string{ListenPortAnnotation: "51821"}, port: 51821, set: true},
		{annotations: map[string]string{ListenPortAnnotation: "65535"}, port: 65535, set: true},
		{annotations: map[string]string{ListenPortAnnotation: "0"}, err: `wirelace.io/listen-port="0": want a UDP port`},
		{annotations: map[string]string{ListenPortAnnotation: "65536"}, err: "1 to 65535"},
		{annotations: map[string]string{ListenPortAnnotation: " 51821"}, err: `" 51821"`},
		{annotations: map[string]string{ListenPortAnnotation: ""}, err: `""`},
	} {
		port, set, err := NodeListenPort(tc.annotations)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want one with %q", tc.annotations, err, tc.err)
			}
		case err != nil:
			t.Errorf("%v: %v", tc.annotations, err)
		case port != tc.port || set != tc.set:
			t.Errorf("%v: (%d, %v), want (%d, %v)", tc.annotations, port, set, tc.port, tc.set)
		}
	}
}
