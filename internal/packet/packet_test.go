package packet

import "testing"

func TestPoolClasses(t *testing.T) {
	var p Pool
	for _, n := range []int{1, 1400, 2048, 2049, 9000, 9217, 65535} {
		pkt := p.Get(n)
		if len(pkt.Data) != n {
			t.Fatalf("Get(%d): len %d", n, len(pkt.Data))
		}
		p.Put(pkt)
		again := p.Get(n)
		if len(again.Data) != n || cap(again.Data) < n {
			t.Fatalf("Get(%d) after Put: len %d cap %d", n, len(again.Data), cap(again.Data))
		}
	}
	if c, _ := class(65536); c != -1 {
		t.Fatalf("oversized datagram got class %d", c)
	}
	p.Put(nil) // harmless
}
