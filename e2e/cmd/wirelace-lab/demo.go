package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/e2e/lab"
)

// withLab makes a lab, runs part in it and removes it, even on failure;
// its logs stay when part failed or keep is set.
func withLab(ctx context.Context, opts lab.Options, keep bool, part func(*lab.Lab) error) (err error) {
	opts.Log = os.Stdout
	l, err := lab.New(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		say("Cleaning up lab %s", l.Prefix)
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if keep || err != nil {
			fmt.Printf("  logs and node state kept in %s\n", l.Dir)
		} else {
			l.RemoveDir()
		}
		if err == nil {
			fmt.Println("  done: no namespace, process or link of the lab is left")
		}
	}()
	return part(l)
}

func demo(ctx context.Context, root string, keep bool) error {
	say("Building the lab: an internet, a real kube-apiserver + etcd, a relay/STUN server and four sites")
	return withLab(ctx, lab.Options{Root: root}, keep, func(l *lab.Lab) error { return demoMesh(ctx, root, l) })
}

// demoMesh is the demo's first part: the mesh, pods through libcni.
func demoMesh(ctx context.Context, root string, l *lab.Lab) error {

	if _, err := l.AddRelay(ctx, "relay1"); err != nil {
		return err
	}
	// A node with a public address, one behind a home router (cone NAT),
	// two in different clouds behind NAT gateways (symmetric NAT).
	topology := []struct {
		node string
		nat  lab.NAT
	}{{"node1", ""}, {"node2", lab.NATCone}, {"node3", lab.NATSymmetric}, {"node4", lab.NATSymmetric}}
	var nodes []*lab.Node
	for i, t := range topology {
		var opts []lab.NodeOption
		where := "public address"
		if t.nat != "" {
			site, err := l.AddSite(ctx, fmt.Sprintf("site%d", i+1), t.nat)
			if err != nil {
				return err
			}
			opts = append(opts, lab.InSite(site))
			where = fmt.Sprintf("behind a %s NAT (router %s)", t.nat, site.WAN)
		}
		n, err := l.AddNode(ctx, t.node, opts...)
		if err != nil {
			return err
		}
		fmt.Printf("  %s: %s, %s\n", n.Name, n.IP, where)
		nodes = append(nodes, n)
	}
	say("Starting wirelaced on every node")
	start := time.Now()
	for _, n := range nodes {
		if err := n.Start(); err != nil {
			return err
		}
	}
	for _, n := range nodes {
		if err := n.WaitReady(ctx, 30*time.Second); err != nil {
			return err
		}
		fmt.Printf("  %s ready (%s after start)\n", n.Name, time.Since(start).Round(time.Millisecond))
	}
	waitPathsSettled(ctx, nodes, 20*time.Second)

	say("kubectl get meshnodes")
	if err := printMeshNodes(ctx, l); err != nil {
		return err
	}

	say("Paths: how each node (rows) reaches each other node (columns), as wirelacectl reports it")
	if err := printPaths(ctx, nodes); err != nil {
		return err
	}

	say("Reachability: ping from each node (rows) to each node's mesh IPv4 and IPv6 (columns)")
	hosts, err := nodeHosts(ctx, nodes)
	if err != nil {
		return err
	}
	if err := printReachability(ctx, hosts, "node"); err != nil {
		return err
	}
	fmt.Println("  every node reaches every other node through WireGuard")

	say("Pods: one per node, attached by the real wirelace + wirelace-ipam plugins through libcni")
	www, err := l.AddInternetHost(ctx, "www")
	if err != nil {
		return err
	}
	var pods []*lab.Pod
	for _, n := range nodes {
		p, err := n.AddPod(ctx, "web-"+n.Name)
		if err != nil {
			return err
		}
		fmt.Printf("  %-12s on %s: %s\n", p.Name, n.Name, strings.Join(p.IPs(), ", "))
		pods = append(pods, p)
	}
	say("Pod-to-pod reachability (rows ping columns, IPv4 / IPv6)")
	if err := printReachability(ctx, podHosts(pods), "pod"); err != nil {
		return err
	}
	fmt.Println("  every pod reaches every other pod; cross-node traffic goes through lace0")
	say("Egress: each pod connects to a host outside the cluster (%s), which reports the source it saw", www.IP)
	for _, p := range pods {
		seen, err := p.WhoAmI(ctx, www)
		if err != nil {
			return fmt.Errorf("%s cannot reach the internet host: %w", p.Name, err)
		}
		fmt.Printf("  %-12s → seen as %s (its node %s: masqueraded)\n", p.Name, seen, p.Node.IP)
	}

	say("wirelacectl status on %s", nodes[1].Name)
	out, err := runCtl(ctx, root, nodes[1], "status")
	if err != nil {
		return err
	}
	fmt.Println(indent(out))

	say("wg show lace0 on %s (read through the UAPI socket; endpoints are virtual, the Bind picks the path)", nodes[1].Name)
	out, err = nodes[1].Exec(ctx, "wg", "show", "lace0")
	if err != nil {
		return err
	}
	fmt.Println(indent(out))
	return nil
}

// waitPathsSettled waits until no pair is between paths any more (or the
// timeout passes): probes answered, relays chosen where nothing answers.
func waitPathsSettled(ctx context.Context, nodes []*lab.Node, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		settled := true
		for _, n := range nodes {
			s, err := n.Status(ctx)
			if err != nil || s.NATType == "" || len(s.Peers) != len(nodes)-1 {
				settled = false
				break
			}
			for _, p := range s.Peers {
				if p.Path != "direct" && !(p.Path == "relay" && !strings.Contains(p.PathReason, "probing")) {
					settled = false
				}
			}
		}
		if settled {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func printPaths(ctx context.Context, nodes []*lab.Node) error {
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 3, ' ', 0)
	fmt.Fprint(w, "  from \\ to")
	for _, n := range nodes {
		fmt.Fprintf(w, "\t%s", n.Name)
	}
	fmt.Fprintln(w)
	var why []string
	for _, a := range nodes {
		s, err := a.Status(ctx)
		if err != nil {
			return err
		}
		byName := map[string]string{}
		for _, p := range s.Peers {
			byName[p.Node] = p.Path
			why = append(why, fmt.Sprintf("  %s → %s: %s", a.Name, p.Node, p.PathReason))
		}
		fmt.Fprintf(w, "  %s (%s)", a.Name, s.NATType)
		for _, b := range nodes {
			if a == b {
				fmt.Fprint(w, "\t-")
				continue
			}
			fmt.Fprintf(w, "\t%s", orDash(byName[b.Name]))
		}
		fmt.Fprintln(w)
	}
	w.Flush()
	fmt.Println()
	fmt.Println(strings.Join(why, "\n"))
	return nil
}

// runCtl runs wirelacectl against a node's daemon.
func runCtl(ctx context.Context, root string, n *lab.Node, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(root, "bin", "wirelacectl"), append([]string{"--socket", n.Socket}, args...)...).CombinedOutput()
	return string(out), err
}

func printMeshNodes(ctx context.Context, l *lab.Lab) error {
	list, err := l.Dynamic.Resource(v1alpha1.MeshNodeResource).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 3, ' ', 0)
	fmt.Fprintln(w, "  NAME\tMESH IP\tENDPOINT\tNAT\tKEY\tAGE")
	for _, u := range list.Items {
		var mn v1alpha1.MeshNode
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &mn); err != nil {
			return err
		}
		ep := ""
		if len(mn.Spec.Endpoints) > 0 {
			ep = mn.Spec.Endpoints[0].Address
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\n", mn.Name, strings.Join(mn.Spec.MeshIPs, ","), ep,
			orDash(string(mn.Spec.NATType)), mn.Spec.KeyPrefix, time.Since(mn.CreationTimestamp.Time).Round(time.Second))
	}
	return w.Flush()
}

// host is anything in the lab that pings: a node or a pod.
type host struct {
	name string
	ips  []string // its addresses, IPv4 first
	ping func(ctx context.Context, ip string, count int) error
}

func nodeHosts(ctx context.Context, nodes []*lab.Node) ([]host, error) {
	var hs []host
	for _, n := range nodes {
		s, err := n.Status(ctx)
		if err != nil {
			return nil, err
		}
		hs = append(hs, host{n.Name, s.MeshIPs, n.Ping})
	}
	return hs, nil
}

func podHosts(pods []*lab.Pod) []host {
	var hs []host
	for _, p := range pods {
		hs = append(hs, host{p.Name, p.IPs(), p.Ping})
	}
	return hs
}

// printReachability pings every host's addresses from every other host
// (rows ping columns; "ok / ok" is IPv4 / IPv6) and fails if any pair
// cannot reach each other within a few seconds.
func printReachability(ctx context.Context, hs []host, what string) error {
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 3, ' ', 0)
	fmt.Fprint(w, "  from \\ to")
	for _, h := range hs {
		fmt.Fprintf(w, "\t%s", h.name)
	}
	fmt.Fprintln(w)
	failures := 0
	for _, a := range hs {
		fmt.Fprintf(w, "  %s", a.name)
		for _, b := range hs {
			if a.name == b.name {
				fmt.Fprint(w, "\t-")
				continue
			}
			var cell []string
			for _, ip := range b.ips {
				if pingUntil(ctx, a, ip, 5*time.Second) {
					cell = append(cell, "ok")
				} else {
					cell = append(cell, "FAIL")
					failures++
				}
			}
			fmt.Fprintf(w, "\t%s", strings.Join(cell, " / "))
		}
		fmt.Fprintln(w)
	}
	w.Flush()
	if failures > 0 {
		return fmt.Errorf("%d %s pairs could not reach each other", failures, what)
	}
	return nil
}

func pingUntil(ctx context.Context, h host, ip string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if h.ping(ctx, ip, 1) == nil {
			return true
		}
	}
	return false
}

func say(format string, args ...any) {
	fmt.Printf("\n== "+format+"\n", args...)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
