package kube

import (
	"encoding/json"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/daemon/mesh"
)

// Every field a peer may use is carried over; a field added to the spec and
// forgotten here fails the count below.
func TestClaimCopiesEverySpecField(t *testing.T) {
	mn := &v1alpha1.MeshNode{
		ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Spec: v1alpha1.MeshNodeSpec{
			PublicKey:       "pub",
			KeyPrefix:       "pub",
			ControlKey:      "ctl",
			Endpoints:       []v1alpha1.Endpoint{{Address: "198.18.0.11:51820", Kind: v1alpha1.EndpointSTUN}},
			NATType:         v1alpha1.NATSymmetric,
			MeshIPs:         []string{"10.77.0.1"},
			PodCIDRs:        []string{"10.244.1.0/24"},
			PodIPs:          []string{"10.99.0.4/31"},
			AdvertisedCIDRs: []string{"192.168.50.0/24"},
		},
	}
	want := mesh.Claim{
		Name: "n1", PublicKey: "pub", ControlKey: "ctl",
		Endpoints: []mesh.ClaimedEndpoint{{Address: "198.18.0.11:51820", Kind: v1alpha1.EndpointSTUN}},
		NATType:   v1alpha1.NATSymmetric,
		MeshIPs:   []string{"10.77.0.1"}, PodCIDRs: []string{"10.244.1.0/24"},
		PodIPs: []string{"10.99.0.4/31"}, AdvertisedCIDRs: []string{"192.168.50.0/24"},
	}
	if got := MeshNodeClaim(mn); !reflect.DeepEqual(got, want) {
		t.Fatalf("MeshNodeClaim:\n got %+v\nwant %+v", got, want)
	}
	// KeyPrefix is display only; every other spec field has a Claim field.
	if s, c := reflect.TypeOf(mn.Spec).NumField(), reflect.TypeOf(want).NumField(); s-1 != c-1 {
		t.Fatalf("MeshNodeSpec has %d fields (KeyPrefix aside), Claim %d (Name aside): carry the new one over", s-1, c-1)
	}

	// mesh's fuzzer decodes a spec's JSON straight into a Claim, without
	// the API types (see FuzzMeshNode): that must give what MeshNodeClaim
	// gives, or the fuzzer explores claims no node can write.
	b, err := json.Marshal(mn.Spec)
	if err != nil {
		t.Fatal(err)
	}
	fromJSON := mesh.Claim{Name: "n1"}
	if err := json.Unmarshal(b, &fromJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, want) {
		t.Fatalf("the spec's JSON %s decoded into a Claim:\n got %+v\nwant %+v", b, fromJSON, want)
	}
}
