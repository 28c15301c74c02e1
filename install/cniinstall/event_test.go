package cniinstall

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestNodeEvents(t *testing.T) {
	for _, tc := range []struct {
		name    string
		objects []corev1.Node
		wantUID string
	}{
		{"node readable", []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-a", UID: "1f0c-uid"}}}, "1f0c-uid"},
		// Without the Node (or the right to read it), the kubelet's way:
		// the name stands for the UID.
		{"node not readable", nil, "node-a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			for i := range tc.objects {
				client.CoreV1().Nodes().Create(context.Background(), &tc.objects[i], metav1.CreateOptions{})
			}
			clk := clocktesting.NewFakePassiveClock(t0)
			rec := NodeEvents{Client: client, Node: "node-a", Clock: clk}
			if err := rec.Warning(context.Background(), ReasonConflict, "the fix"); err != nil {
				t.Fatal(err)
			}
			clk.SetTime(t0.Add(1))
			if err := rec.Warning(context.Background(), ReasonConflict, "again"); err != nil {
				t.Fatal(err) // a second Event gets a name of its own
			}
			list, err := client.CoreV1().Events(metav1.NamespaceDefault).List(context.Background(), metav1.ListOptions{})
			if err != nil || len(list.Items) != 2 {
				t.Fatalf("events: %v, %v", list, err)
			}
			ev := list.Items[0]
			if ev.Message == "again" {
				ev = list.Items[1]
			}
			want := corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "node-a", UID: ev.InvolvedObject.UID}
			if ev.InvolvedObject != want || string(ev.InvolvedObject.UID) != tc.wantUID {
				t.Errorf("involvedObject %+v, want %+v with UID %s", ev.InvolvedObject, want, tc.wantUID)
			}
			if ev.Type != corev1.EventTypeWarning || ev.Reason != "CNIConfigConflict" || ev.Message != "the fix" ||
				ev.Source.Component != "wirelace-install" || ev.Source.Host != "node-a" || ev.Count != 1 ||
				!ev.FirstTimestamp.Time.Equal(t0) || !ev.LastTimestamp.Time.Equal(t0) {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

// TestRunRecordsEvent wires the fight to a fake API server end to end,
// with a fast policy.
func TestRunRecordsEvent(t *testing.T) {
	dir := t.TempDir()
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", UID: "u1"}})
	cfg := testConfig(t, Standalone, dir)
	cfg.Policy = Policy{MaxReinserts: 1, Window: time.Minute, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	cfg.Events = NodeEvents{Client: client, Node: "node-a"}
	in := newInstaller(t, cfg)
	path := filepath.Join(dir, DefaultConfName)
	stop := runInstaller(t, in)
	for range 2 {
		waitFor(t, 5*time.Second, "the file", func() bool { return hasWirelace(path) })
		os.Remove(path)
	}
	waitFor(t, 5*time.Second, "the Event", func() bool {
		l, _ := client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		return len(l.Items) == 1 && l.Items[0].InvolvedObject.UID == "u1" && strings.Contains(l.Items[0].Message, "cni.exclusive=false")
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
