package cniinstall

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
)

// EventRecorder records a Warning Event about this node.
type EventRecorder interface {
	Warning(ctx context.Context, reason, message string) error
}

// ReasonConflict is the Event reason of a CNI configuration fight.
const ReasonConflict = "CNIConfigConflict"

// eventComponent is the Event's source and reporting controller.
const eventComponent = "wirelace-install"

// eventTimeout bounds one Event's API calls: reporting must not hold up the
// installer.
const eventTimeout = 10 * time.Second

// NodeEvents records Events on a Node object, where `kubectl describe node`
// and `kubectl get events` show them. Like the kubelet's, they live in the
// default namespace, Nodes having none.
type NodeEvents struct {
	Client kubernetes.Interface
	Node   string
	Clock  clock.PassiveClock // nil: the real clock
}

// Warning creates a Warning Event with reason and message on the Node.
func (e NodeEvents) Warning(ctx context.Context, reason, message string) error {
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	var clk clock.PassiveClock = clock.RealClock{}
	if e.Clock != nil {
		clk = e.Clock
	}
	// The kubelet refers to its Node with the name as UID; the real UID is
	// better when this service account may read Nodes.
	uid := types.UID(e.Node)
	if n, err := e.Client.CoreV1().Nodes().Get(ctx, e.Node, metav1.GetOptions{}); err == nil {
		uid = n.UID
	}
	now := clk.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			// As client-go's recorder names them: unique per object and time.
			Name:      fmt.Sprintf("%s.%x", e.Node, now.UnixNano()),
			Namespace: metav1.NamespaceDefault,
		},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "v1",
			Kind:       "Node",
			Name:       e.Node,
			UID:        uid,
		},
		Reason:              reason,
		Message:             message,
		Type:                corev1.EventTypeWarning,
		Source:              corev1.EventSource{Component: eventComponent, Host: e.Node},
		FirstTimestamp:      metav1.NewTime(now),
		LastTimestamp:       metav1.NewTime(now),
		Count:               1,
		ReportingController: "wirelace.io/" + eventComponent,
		ReportingInstance:   eventComponent + "-" + e.Node,
	}
	if _, err := e.Client.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Event %s on Node %s: %w", reason, e.Node, err)
	}
	return nil
}
