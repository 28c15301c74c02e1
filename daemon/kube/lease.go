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

// RenewLease creates or renews the node's heartbeat Lease. Liveness lives in
// a Lease rather than in the MeshNode so that heartbeats never wake the
// MeshNode watchers on every other node.
func RenewLease(ctx context.Context, c Clients, node *corev1.Node, namespace string, interval time.Duration) error {
	leases := c.Core.CoordinationV1().Leases(namespace)
	now := metav1.NewMicroTime(time.Now())
	dur := int32(interval.Seconds()) * leaseDurationFactor
	cur, err := leases.Get(ctx, node.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l := &coordv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:            node.Name,
				Namespace:       namespace,
				Labels:          map[string]string{NodeLabel: node.Name},
				OwnerReferences: []metav1.OwnerReference{nodeOwner(node)},
			},
			Spec: coordv1.LeaseSpec{
				HolderIdentity:       ptr.To(node.Name),
				LeaseDurationSeconds: ptr.To(dur),
				AcquireTime:          &now,
				RenewTime:            &now,
			},
		}
		if _, err := leases.Create(ctx, l, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create Lease %s/%s: %w", namespace, node.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read Lease %s/%s: %w", namespace, node.Name, err)
	}
	cur.Spec.HolderIdentity = ptr.To(node.Name)
	cur.Spec.LeaseDurationSeconds = ptr.To(dur)
	cur.Spec.RenewTime = &now
	if _, err := leases.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renew Lease %s/%s: %w", namespace, node.Name, err)
	}
	return nil
}
