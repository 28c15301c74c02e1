package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/wirelace/wirelace/e2e/benchreport"
	"github.com/wirelace/wirelace/e2e/lab"
)

// A new node joining a running mesh: a public node, one behind a cone NAT
// and one behind a symmetric NAT (and a relay) are up; a new node starts,
// by turns on the internet, behind a cone NAT of its own and behind a
// symmetric NAT of its own. Every running node pings the new node's mesh IP
// every 50 ms from the moment its MeshNode is seen, and the join is the
// time from then to the last of their first replies: when the new node is
// reachable from all nodes. Target: under joinTarget every time.
const (
	joinRounds = 3
	joinTarget = time.Second
)

// joinKinds are where a joining node sits, in the order they take turns.
var joinKinds = []lab.NAT{"", lab.NATCone, lab.NATSymmetric}

func benchJoin(ctx context.Context, root string) error {
	say("Join: %d new nodes (on the internet, behind a cone NAT, behind a symmetric NAT, by turns) reached from a public, a cone and a symmetric node", joinRounds*len(joinKinds))
	var res benchreport.Join
	err := withLab(ctx, lab.Options{Root: root}, false, func(l *lab.Lab) error {
		b, err := l.Build(ctx, failoverTopology)
		if err != nil {
			return err
		}
		running := []*lab.Node{b.Nodes["pub"], b.Nodes["cone"], b.Nodes["sym"]}
		seen, err := watchMeshNodes(ctx, l)
		if err != nil {
			return err
		}
		defer seen.stop()
		for round := range joinRounds {
			for _, kind := range joinKinds {
				// Short names: a node's and its site's names end up in
				// interface names, which have 15 bytes.
				t, err := joinOnce(ctx, l, fmt.Sprintf("j%d%c", round, kindName(kind)[0]), kind, running, seen)
				if err != nil {
					return err
				}
				res.Trials = append(res.Trials, t)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var all []float64
	for _, t := range res.Trials {
		all = append(all, t.Ms)
	}
	slices.Sort(all)
	res.P50Ms, res.MaxMs = all[len(all)/2], all[len(all)-1]
	fmt.Printf("  reachable from all nodes: p50 %.0f ms, max %.0f ms (target < %v every time)\n", res.P50Ms, res.MaxMs, joinTarget)
	return writeBenchJSON(root, benchreport.JoinFile, res)
}

func kindName(kind lab.NAT) string {
	if kind == "" {
		return "public"
	}
	return string(kind)
}

// joinOnce starts a new node, in a site of its own when kind is a NAT, and
// times its reachability from every running node.
func joinOnce(ctx context.Context, l *lab.Lab, name string, kind lab.NAT, running []*lab.Node, seen *meshNodesSeen) (benchreport.JoinTrial, error) {
	t := benchreport.JoinTrial{Node: name, Kind: kindName(kind)}
	var opts []lab.NodeOption
	if kind != "" {
		site, err := l.AddSite(ctx, "r"+name[1:], kind)
		if err != nil {
			return t, err
		}
		opts = append(opts, lab.InSite(site))
	}
	n, err := l.AddNode(ctx, name, opts...)
	if err != nil {
		return t, err
	}
	// Stopped after the trial, so that the running nodes' next trial is
	// not slowed by this one's traffic; its MeshNode stays, as a node that
	// went away would leave it until it is garbage collected.
	defer n.Stop()
	if err := n.Start(); err != nil {
		return t, err
	}
	at, ip, err := seen.wait(ctx, name, 30*time.Second)
	if err != nil {
		return t, err
	}
	replies := make([]time.Time, len(running))
	errs := make([]error, len(running))
	var wg sync.WaitGroup
	for i, from := range running {
		wg.Go(func() {
			replies[i], errs[i] = firstReply(ctx, from, ip)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return t, fmt.Errorf("reach %s (%s): %w", name, ip, err)
	}
	for i, from := range running {
		d := replies[i].Sub(at)
		t.From = append(t.From, benchreport.JoinFrom{Node: from.Name, Ms: ms(d)})
		t.Ms = max(t.Ms, ms(d))
	}
	fmt.Printf("  %-12s %-9s reachable from all %4.0f ms after its MeshNode (", name, t.Kind, t.Ms)
	for i, f := range t.From {
		if i > 0 {
			fmt.Print(", ")
		}
		fmt.Printf("%s %.0f", f.Node, f.Ms)
	}
	fmt.Println(")")
	return t, nil
}
