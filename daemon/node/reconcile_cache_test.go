package node

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strconv"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/daemon/kube"
	"github.com/wirelace/wirelace/daemon/mesh"
)

// Over a random sequence of MeshNode changes (each with a new
// resourceVersion, as the API server gives), the cached parse is always
// what parsing the object now returns, valid or not.
func TestClaimCacheMatchesParse(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	var c reconcileCache
	objs := map[string]*v1alpha1.MeshNode{}
	rv := 0
	for step := range 3000 {
		name := fmt.Sprintf("n%d", r.IntN(20))
		switch {
		case r.IntN(5) == 0:
			delete(objs, name)
		default:
			rv++
			ip := fmt.Sprintf("10.77.0.%d", r.IntN(300)) // some do not parse
			objs[name] = &v1alpha1.MeshNode{
				ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: strconv.Itoa(rv)},
				Spec: v1alpha1.MeshNodeSpec{
					PublicKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
					MeshIPs:   []string{ip},
					PodCIDRs:  []string{fmt.Sprintf("10.%d.0.0/24", r.IntN(256))},
				},
			}
		}
		present := map[string]bool{}
		for name, mn := range objs {
			present[name] = true
			got, gerr := c.parse(mn)
			want, werr := mesh.ParseClaim(kube.MeshNodeClaim(mn))
			if !reflect.DeepEqual(got, want) || (gerr == nil) != (werr == nil) {
				t.Fatalf("step %d, %s: cached %+v %v, parsed %+v %v", step, name, got, gerr, want, werr)
			}
		}
		c.keepClaims(present)
		if len(c.claims) != len(objs) {
			t.Fatalf("step %d: %d claims cached for %d objects", step, len(c.claims), len(objs))
		}
	}
}

// The routes remembered after a write are what a listing would show: the
// desired ones except those another owner holds.
func TestRoutesApplied(t *testing.T) {
	var c reconcileCache
	if !c.startRun(time.Unix(0, 0)) {
		t.Fatal("the first run must read the device and routes back")
	}
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	c.routesApplied(254, []netip.Prefix{p("10.0.0.0/24"), p("10.0.1.0/24")}, []netip.Prefix{p("10.0.1.0/24")})
	if got := c.routes[254]; !reflect.DeepEqual(got, []netip.Prefix{p("10.0.0.0/24")}) {
		t.Fatalf("remembered %v", got)
	}
	c.peers = map[wgtypes.Key]mesh.AppliedPeer{}
	if c.startRun(time.Unix(0, 0).Add(fullResync / 2)) {
		t.Fatal("a run within fullResync must use what it remembers")
	}
	if !c.startRun(time.Unix(0, 0).Add(fullResync)) || len(c.routes) != 0 || c.peers != nil {
		t.Fatal("after fullResync a run must read everything back")
	}
	c.peers = map[wgtypes.Key]mesh.AppliedPeer{}
	c.forgetApplied()
	if !c.startRun(time.Unix(0, 0).Add(fullResync + time.Second)) {
		t.Fatal("after a failure a run must read everything back")
	}
}
