// Command wirelacectl shows what this node's wirelaced is doing: its
// readiness, mesh addresses and peers (status), and pod address allocations
// (ipam). It talks to the daemon's local socket; -o json is for scripts.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wirelace/wirelace/netconf"
)

func main() {
	fs := flag.NewFlagSet("wirelacectl", flag.ExitOnError)
	socket := fs.String("socket", netconf.DefaultSocket, "wirelaced's local API socket")
	output := fs.String("o", "table", "output format: table or json")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wirelacectl [flags] status|ipam|chained\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.Parse(os.Args[1:])
	// Allow flags after the command too (wirelacectl status -o json).
	cmd := fs.Arg(0)
	if fs.NArg() > 1 {
		fs.Parse(fs.Args()[1:])
	}
	if *output != "table" && *output != "json" {
		fail(fmt.Errorf("-o %q: want table or json", *output))
	}
	c := netconf.NewClient(*socket)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch cmd {
	case "status":
		s, err := c.Status(ctx)
		if err != nil {
			fail(err)
		}
		if *output == "json" {
			printJSON(s)
			return
		}
		printStatus(os.Stdout, s)
		if !s.Ready {
			os.Exit(3)
		}
	case "ipam":
		l, err := c.Allocations(ctx)
		if err != nil {
			fail(err)
		}
		if *output == "json" {
			printJSON(l)
			return
		}
		printAllocations(os.Stdout, l)
	case "chained":
		l, err := c.Registrations(ctx)
		if err != nil {
			fail(err)
		}
		if *output == "json" {
			printJSON(l)
			return
		}
		printRegistrations(os.Stdout, l)
	default:
		fs.Usage()
		os.Exit(2)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "wirelacectl: %v\n", err)
	os.Exit(1)
}

func printJSON(v any) {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func printStatus(w io.Writer, s netconf.Status) {
	ready := "ready"
	if !s.Ready {
		ready = "NOT READY: " + s.Reason
	}
	fmt.Fprintf(w, "node:       %s (%s)\n", s.Node, ready)
	fmt.Fprintf(w, "interface:  %s  mtu %d  port %d\n", s.Interface, s.MTU, s.ListenPort)
	fmt.Fprintf(w, "public key: %s\n", s.PublicKey)
	fmt.Fprintf(w, "mesh IPs:   %s\n", strings.Join(s.MeshIPs, ", "))
	fmt.Fprintf(w, "endpoints:  %s\n", strings.Join(s.Endpoints, ", "))
	nat := s.NATType
	if nat == "" {
		nat = "not classified (no STUN servers configured)"
	}
	fmt.Fprintf(w, "NAT:        %s\n", nat)
	if s.NATReason != "" {
		fmt.Fprintf(w, "            %s\n", s.NATReason)
	}
	for _, r := range s.Relays {
		state := "connected"
		if !r.Connected {
			state = "DISCONNECTED"
			if r.Error != "" {
				state += ": " + r.Error
			}
		}
		fmt.Fprintf(w, "relay:      %s %s\n", r.Addr, state)
	}
	if in := s.Install; in != nil {
		fmt.Fprintf(w, "CNI config: %s %s\n", strings.ToUpper(string(in.State)), in.Conflist)
		if in.Message != "" {
			fmt.Fprintf(w, "            %s\n", in.Message)
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tPATH\tADDRESS\tNAT\tHANDSHAKE\tRX\tTX\tWHY")
	for _, p := range s.Peers {
		hs := "never"
		if p.LastHandshake != nil {
			hs = time.Since(*p.LastHandshake).Round(time.Second).String() + " ago"
		}
		name := p.Node
		if name == "" {
			name = p.PublicKey[:8] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", name, dash(p.Path), dash(p.PathAddr), dash(p.NATType), hs, p.RxBytes, p.TxBytes, p.PathReason)
	}
	tw.Flush()
}

func printAllocations(w io.Writer, l netconf.ListResponse) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tCONTAINER\tIF\tIPS\tCREATED")
	for _, a := range l.Allocations {
		pod := a.PodNamespace + "/" + a.PodName
		if a.PodName == "" {
			pod = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", pod, shortID(a.ContainerID), a.IfName, strings.Join(a.IPs, ","), a.Created)
	}
	tw.Flush()
}

func printRegistrations(w io.Writer, l netconf.ChainedListResponse) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tNETWORK\tCONTAINER\tIF\tIPS\tCREATED")
	for _, r := range l.Registrations {
		pod := r.PodNamespace + "/" + r.PodName
		if r.PodName == "" {
			pod = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", pod, r.Network, shortID(r.ContainerID), r.IfName, strings.Join(r.IPs, ","), r.Created)
	}
	tw.Flush()
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
