package stunattr

import (
	"testing"

	"github.com/pion/stun/v3"
)

func TestChangeRequestCodec(t *testing.T) {
	for _, cr := range []ChangeRequest{{}, {ChangeIP: true}, {ChangePort: true}, {true, true}} {
		m := stun.MustBuild(stun.TransactionID, stun.BindingRequest, cr)
		var got ChangeRequest
		if err := got.GetFrom(m); err != nil || got != cr {
			t.Errorf("%+v round-tripped to %+v (%v)", cr, got, err)
		}
	}
	m := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{1}})
	var cr ChangeRequest
	if err := cr.GetFrom(m); err == nil {
		t.Errorf("short CHANGE-REQUEST accepted")
	}
}
