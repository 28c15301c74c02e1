package v1alpha1

import (
	"os"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/wirelace/wirelace/api/vocab"
)

// The CRD's enums are written as kubebuilder markers on the fields; the
// words are defined in vocab. This keeps the two equal, so the API server
// accepts every value the daemon can publish and nothing else.
func TestCRDEnumsMatchVocab(t *testing.T) {
	b, err := os.ReadFile("../../install/crds/wirelace.io_meshnodes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	spec := dig(t, crd, "spec", "versions", 0, "schema", "openAPIV3Schema", "properties", "spec", "properties")
	check := func(field string, got any, want []string) {
		t.Helper()
		var have []string
		for _, v := range got.([]any) {
			have = append(have, v.(string))
		}
		if !slices.Equal(have, want) {
			t.Errorf("CRD enum of %s is %v, vocab says %v: fix the marker in meshnode_types.go and run make generate", field, have, want)
		}
	}
	check("natType", dig(t, spec, "natType", "enum"), strs(vocab.NATTypes()))
	check("endpoints[].kind", dig(t, spec, "endpoints", "items", "properties", "kind", "enum"), strs(vocab.PublishedEndpointKinds()))
}

func strs[T ~string](in []T) []string {
	var out []string
	for _, v := range in {
		out = append(out, string(v))
	}
	return out
}

// dig walks maps by key and slices by index.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok || m[k] == nil {
				t.Fatalf("CRD has no %v", path)
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || len(s) <= k {
				t.Fatalf("CRD has no %v", path)
			}
			v = s[k]
		}
	}
	return v
}
