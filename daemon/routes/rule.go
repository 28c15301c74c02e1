package routes

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RulePriority is the priority of the node-IP policy rule: before the main
// table (32766), so that a node address routed through the mesh wins over
// the main table's default route, and after the rules other agents put
// near the top (Cilium's are below 100).
const RulePriority = 30119

// The node-IP table holds one host route per remote node address, through
// the mesh. Reaching it needs a policy rule, "not fwmark MARK lookup
// TABLE": everything except packets marked MARK (WireGuard's own UDP, the
// relay connections) consults the table first. A peer's WireGuard endpoint
// is often exactly its node address, so without the mark the tunnel's own
// packets would be routed into the tunnel.

// EnsureRule installs the node-IP rule for both families, if missing.
func EnsureRule(table, mark int) error {
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		have, err := findRules(family, table, mark)
		if err != nil {
			return err
		}
		if len(have) > 0 {
			continue
		}
		if err := netlink.RuleAdd(rule(family, table, mark)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add policy rule %q: %w", ruleString(table, mark), err)
		}
	}
	return nil
}

// DeleteRule removes the node-IP rule of both families, if present. Only a
// rule with exactly Wirelace's priority, mark and table is touched.
func DeleteRule(table, mark int) error {
	var errs []error
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		have, err := findRules(family, table, mark)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range have {
			if err := netlink.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete policy rule %q: %w", ruleString(table, mark), err))
			}
		}
	}
	return errors.Join(errs...)
}

func rule(family, table, mark int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = family
	r.Priority = RulePriority
	r.Table = table
	r.Mark = uint32(mark)
	m := uint32(0xffffffff)
	r.Mask = &m
	r.Invert = true
	return r
}

func findRules(family, table, mark int) ([]netlink.Rule, error) {
	rules, err := netlink.RuleList(family)
	if err != nil {
		return nil, fmt.Errorf("list policy rules: %w", err)
	}
	var out []netlink.Rule
	for _, r := range rules {
		if r.Priority == RulePriority && r.Table == table && r.Mark == uint32(mark) && r.Invert {
			out = append(out, r)
		}
	}
	return out, nil
}

func ruleString(table, mark int) string {
	return fmt.Sprintf("priority %d not fwmark %#x lookup %d", RulePriority, mark, table)
}
