// Package masq masquerades pod traffic that leaves the cluster behind the
// node's address, with nftables rules in a table of wirelaced's own
// (programmed through netlink; no nft or iptables binary is assumed).
//
// The table holds two rules per address family whatever the size of the
// mesh: the prefixes live in interval sets, so a thousand peers cost set
// elements in a few netlink messages, not a thousand rules (one rule per
// prefix pair overflowed the netlink socket's buffer at 100 peers).
//
//	table inet wirelace {
//	  set local4   { type ipv4_addr; flags interval; }   # this node's pod CIDRs
//	  set cluster4 { type ipv4_addr; flags interval; }   # every pod and mesh prefix
//	  chain postrouting { type nat hook postrouting priority srcnat;
//	    ip saddr @local4 ip daddr @cluster4 return
//	    ip saddr @local4 masquerade
//	  }   # and the same for IPv6
//	}
package masq

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is wirelaced's nftables table (family inet): `nft list table
// inet wirelace`.
const TableName = "wirelace"

// elementsPerMessage bounds the set elements sent in one netlink message,
// so that neither a message nor the kernel's answers outgrow the socket's
// buffer however many prefixes the mesh has.
const elementsPerMessage = 256

// Rules is what the table should say: traffic from Local to anything outside
// Cluster is masqueraded.
type Rules struct {
	// Local are this node's pod CIDRs.
	Local []netip.Prefix
	// Cluster are the destinations that stay unmasqueraded: every node's pod
	// CIDRs and the mesh pools.
	Cluster []netip.Prefix
}

// canonical is r with every prefix masked and each list sorted, so that
// two Rules that program the same table compare equal. Apply runs on
// every reconcile with every node's prefixes (thousands at 1000 nodes);
// comparing them as values spares formatting and sorting that many
// strings only to find, nearly always, that nothing changed.
func (r Rules) canonical() Rules {
	return Rules{Local: canonicalPrefixes(r.Local), Cluster: canonicalPrefixes(r.Cluster)}
}

func canonicalPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Masked()
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

func (r Rules) equal(o Rules) bool {
	return slices.Equal(r.Local, o.Local) && slices.Equal(r.Cluster, o.Cluster)
}

// Masq owns the table.
type Masq struct {
	applied Rules // canonical; valid once written is true
	written bool
}

// family is one address family's sets and match expressions.
type family struct {
	proto      byte
	keyType    nftables.SetDatatype
	srcOffset  uint32
	dstOffset  uint32
	addrLen    uint32
	suffix     string
	is4        bool
	local, all []Range
}

// Apply makes the table match r. The table is rebuilt whole in one netlink
// transaction, which the kernel applies atomically: there is never a moment
// without masquerading, nor a half-written rule set. Nothing is written
// when r is what was applied last.
func (m *Masq) Apply(r Rules) error {
	k := r.canonical()
	if m.written && k.equal(m.applied) {
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
	families := []family{
		{proto: unix.NFPROTO_IPV4, keyType: nftables.TypeIPAddr, srcOffset: 12, dstOffset: 16, addrLen: 4, suffix: "4", is4: true},
		{proto: unix.NFPROTO_IPV6, keyType: nftables.TypeIP6Addr, srcOffset: 8, dstOffset: 24, addrLen: 16, suffix: "6"},
	}
	for _, f := range families {
		f.local = Ranges(filter(r.Local, f.is4))
		f.all = Ranges(filter(r.Cluster, f.is4))
		if len(f.local) == 0 {
			continue // no pods of this family: nothing to masquerade
		}
		local, err := addSet(c, table, "local"+f.suffix, f.keyType, f.local)
		if err != nil {
			return err
		}
		cluster, err := addSet(c, table, "cluster"+f.suffix, f.keyType, f.all)
		if err != nil {
			return err
		}
		fromLocal := f.match(f.srcOffset, local)
		c.AddRule(&nftables.Rule{Table: table, Chain: chain,
			Exprs: append(append(fromLocal, f.lookup(f.dstOffset, cluster)...), &expr.Verdict{Kind: expr.VerdictReturn})})
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: append(slices.Clip(fromLocal), &expr.Masq{})})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("program nftables table inet %s: %w", TableName, err)
	}
	m.applied, m.written = k, true
	return nil
}

// addSet adds an interval set holding ranges, its elements in messages of
// at most elementsPerMessage.
func addSet(c *nftables.Conn, table *nftables.Table, name string, kt nftables.SetDatatype, ranges []Range) (*nftables.Set, error) {
	set := &nftables.Set{Table: table, Name: name, KeyType: kt, Interval: true}
	if err := c.AddSet(set, nil); err != nil {
		return nil, fmt.Errorf("add set %s: %w", name, err)
	}
	elems := Elements(ranges)
	for len(elems) > 0 {
		n := min(len(elems), elementsPerMessage)
		// An interval's start and end must travel together.
		if n < len(elems) && !elems[n-1].IntervalEnd && n > 1 {
			n--
		}
		if err := c.SetAddElements(set, elems[:n]); err != nil {
			return nil, fmt.Errorf("add elements to set %s: %w", name, err)
		}
		elems = elems[n:]
	}
	return set, nil
}

// match is "meta nfproto F; <saddr or daddr> @set".
func (f family) match(offset uint32, set *nftables.Set) []expr.Any {
	return append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.proto}},
	}, f.lookup(offset, set)...)
}

// lookup loads the address at offset and looks it up in set.
func (f family) lookup(offset uint32, set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: f.addrLen},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
	}
}

func filter(ps []netip.Prefix, is4 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Unmap().Is4() == is4 {
			out = append(out, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked())
		}
	}
	return out
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
