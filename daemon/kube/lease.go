package kube

import (
	"context"
	"fmt"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// leaseDurationFactor is how many heartbeat intervals a Lease stays valid:
// long enough that one slow renewal does not make a node look dead.
const leaseDurationFactor = 4

// Lease renews the node's heartbeat Lease. Liveness lives in a Lease
// rather than in the MeshNode so that heartbeats never wake the MeshNode
// watchers on every other node.
//
// Like the kubelet's lease controller (k8s.io/component-helpers), it keeps
// the Lease it last wrote and renews from it, so a renewal is one request,
// not a read and a write; it reads again only when that fails (someone
// else wrote or deleted the Lease). The helper itself is not used: it
// retries inside a renewal until it succeeds and reports only repeated
// failure, while the daemon counts each renewal's result to say when it
// lost the API (and when it has it back).
type Lease struct {
	c         Clients
	namespace string
	latest    *coordv1.Lease
}

// NewLease returns a renewer of the Leases in namespace.
func NewLease(c Clients, namespace string) *Lease {
	return &Lease{c: c, namespace: namespace}
}

// Renew creates or renews node's Lease, valid for leaseDurationFactor
// intervals. It is not safe for concurrent use: one heartbeat loop calls it.
func (l *Lease) Renew(ctx context.Context, node *corev1.Node, interval time.Duration) error {
	leases := l.c.Core.CoordinationV1().Leases(l.namespace)
	now := metav1.NewMicroTime(time.Now())
	dur := int32(interval.Seconds()) * leaseDurationFactor
	if cur := l.latest; cur != nil && cur.Name == node.Name {
		if updated, err := leases.Update(ctx, renewed(cur.DeepCopy(), node, dur, now), metav1.UpdateOptions{}); err == nil {
			l.latest = updated
			return nil
		} else if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("renew Lease %s/%s: %w", l.namespace, node.Name, err)
		}
		l.latest = nil // changed or deleted behind our back: read it again
	}
	cur, err := leases.Get(ctx, node.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		created, err := leases.Create(ctx, &coordv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:            node.Name,
				Namespace:       l.namespace,
				Labels:          map[string]string{NodeLabel: node.Name},
				OwnerReferences: []metav1.OwnerReference{nodeOwner(node)},
			},
			Spec: coordv1.LeaseSpec{
				HolderIdentity:       ptr.To(node.Name),
				LeaseDurationSeconds: ptr.To(dur),
				AcquireTime:          &now,
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create Lease %s/%s: %w", l.namespace, node.Name, err)
		}
		l.latest = created
		return nil
	}
	if err != nil {
		return fmt.Errorf("read Lease %s/%s: %w", l.namespace, node.Name, err)
	}
	updated, err := leases.Update(ctx, renewed(cur, node, dur, now), metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("renew Lease %s/%s: %w", l.namespace, node.Name, err)
	}
	l.latest = updated
	return nil
}

// renewed sets l's holder, duration and renew time, and returns it.
func renewed(l *coordv1.Lease, node *corev1.Node, dur int32, now metav1.MicroTime) *coordv1.Lease {
	l.Spec.HolderIdentity = ptr.To(node.Name)
	l.Spec.LeaseDurationSeconds = ptr.To(dur)
	l.Spec.RenewTime = &now
	return l
}
