// Package masq masquerades pod traffic that leaves the cluster behind the
// node's address, with nftables rules in a table of wirelaced's own
// (programmed through netlink; no nft or iptables binary is assumed).
package masq

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is wirelaced's nftables table (family inet): `nft list table
// inet wirelace`.
const TableName = "wirelace"

// Rules is what the table should say: traffic from Local to anything outside
// Cluster is masqueraded.
type Rules struct {
	// Local are this node's pod CIDRs.
	Local []netip.Prefix
	// Cluster are the destinations that stay unmasqueraded: every node's pod
	// CIDRs and the mesh pools.
	Cluster []netip.Prefix
}

// key is a canonical text of r, to skip rewrites when nothing changed.
func (r Rules) key() string {
	var parts []string
	for _, l := range [][]netip.Prefix{r.Local, r.Cluster} {
		s := make([]string, 0, len(l))
		for _, p := range l {
			s = append(s, p.Masked().String())
		}
		slices.Sort(s)
		parts = append(parts, strings.Join(s, ","))
	}
	return strings.Join(parts, "|")
}

// Masq owns the table.
type Masq struct {
	applied string
}

// Apply makes the table match r. The table is rebuilt whole in one netlink
// batch, which the kernel applies atomically: there is never a moment
// without masquerading, nor a half-written rule set. Nothing is written
// when r is what was applied last.
func (m *Masq) Apply(r Rules) error {
	k := r.key()
	if k == m.applied {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	// Adding then deleting makes the delete safe whether or not the table
	// exists; the add that follows starts it afresh, all in one batch.
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)
	chain := c.AddChain(&nftables.Chain{
		Name:     "postrouting",
		Table:    table,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	})
	for _, local := range r.Local {
		for _, dst := range r.Cluster {
			if dst.Addr().Is4() != local.Addr().Is4() {
				continue
			}
			exprs := append(match(local, true), match(dst, false)...)
			c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: append(exprs, &expr.Verdict{Kind: expr.VerdictReturn})})
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: append(match(local, true), &expr.Masq{})})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("program nftables table inet %s: %w", TableName, err)
	}
	m.applied = k
	return nil
}

// Delete removes the table (uninstall). It is not an error if it is absent.
func Delete() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	c.AddTable(table)
	c.DelTable(table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table inet %s: %w", TableName, err)
	}
	return nil
}

// match is the expressions for "source (or destination) address in p",
// including the family check an inet table needs.
func match(p netip.Prefix, src bool) []expr.Any {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
	if src {
		off = 12
	}
	if p.Addr().Is6() {
		proto, off, n = unix.NFPROTO_IPV6, 24, 16
		if src {
			off = 8
		}
	}
	mask := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}
