package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// The lab installs what a user's cluster would get from install/: the CRDs,
// the namespace and the node ClusterRole, bound to the ServiceAccount whose
// node-bound tokens the lab daemons use.
const (
	Namespace           = "wirelace-system"
	serviceAccount      = "wirelace"
	relayServiceAccount = "wirelace-relay"
	// With Options.Helm the chart owns the names above; the lab's relays
	// (processes, not the chart's StatefulSet) get their own.
	helmLabNamespace = "wirelace-lab"
	helmLabRelayRole = "wirelace-lab-relay"
)

// relayIdentity is the namespace and ServiceAccount of the lab's relays.
func (l *Lab) relayIdentity() (namespace, serviceAccount string) {
	if l.opts.Helm {
		return helmLabNamespace, relayServiceAccount
	}
	return Namespace, relayServiceAccount
}

// roles are the ClusterRoles in install/rbac and the ServiceAccount each is
// bound to.
var roles = []struct{ file, serviceAccount string }{
	{"clusterrole.yaml", serviceAccount},
	{"relay-clusterrole.yaml", relayServiceAccount},
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func (l *Lab) install(ctx context.Context) error {
	if err := l.installCRDs(ctx); err != nil {
		return err
	}
	if l.opts.Helm {
		return l.installRelayIdentity(ctx)
	}
	return l.installManifests(ctx)
}

// installCRDs creates install/crds and waits until they are served.
func (l *Lab) installCRDs(ctx context.Context) error {
	crds, err := filepath.Glob(filepath.Join(l.opts.Root, "install", "crds", "*.yaml"))
	if err != nil || len(crds) == 0 {
		return fmt.Errorf("no CRDs under %s/install/crds (run make generate)", l.opts.Root)
	}
	for _, f := range crds {
		var obj unstructured.Unstructured
		if err := readYAML(f, &obj.Object); err != nil {
			return err
		}
		if _, err := l.Dynamic.Resource(crdResource).Create(ctx, &obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create CRD from %s: %w", f, err)
		}
	}
	// A CRD is usable once the API server serves its resource.
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, r := range []schema.GroupVersionResource{v1alpha1.MeshNodeResource, v1alpha1.IPClaimResource, v1alpha1.RouteGrantResource} {
			if _, err := l.Dynamic.Resource(r).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
				return false, nil // not served yet
			}
		}
		return true, nil
	})
}

// installRelayIdentity gives the lab's relays a ServiceAccount bound to
// the relay ClusterRole's rules under a name of the lab's own.
func (l *Lab) installRelayIdentity(ctx context.Context) error {
	ns, sa := l.relayIdentity()
	if _, err := l.Core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	var role rbacv1.ClusterRole
	if err := readYAML(filepath.Join(l.opts.Root, "install", "rbac", "relay-clusterrole.yaml"), &role); err != nil {
		return err
	}
	role.ObjectMeta = metav1.ObjectMeta{Name: helmLabRelayRole}
	if _, err := l.Core.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create ClusterRole %s: %w", role.Name, err)
	}
	if _, err := l.Core.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create service account %s: %w", sa, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: helmLabRelayRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: helmLabRelayRole},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
	}
	if _, err := l.Core.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create ClusterRoleBinding %s: %w", binding.Name, err)
	}
	return nil
}

// installManifests installs what install/ holds besides the CRDs, as an
// operator applying the manifests would (the lab's daemons are processes,
// so not the DaemonSet).
func (l *Lab) installManifests(ctx context.Context) error {
	if _, err := l.Core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	for _, r := range roles {
		var role rbacv1.ClusterRole
		if err := readYAML(filepath.Join(l.opts.Root, "install", "rbac", r.file), &role); err != nil {
			return err
		}
		if _, err := l.Core.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create ClusterRole %s: %w", role.Name, err)
		}
		if _, err := l.Core.CoreV1().ServiceAccounts(Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: r.serviceAccount}}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create service account %s: %w", r.serviceAccount, err)
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: r.serviceAccount, Namespace: Namespace}},
		}
		if _, err := l.Core.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create ClusterRoleBinding %s: %w", role.Name, err)
		}
	}
	// Leases through a Role in the Wirelace namespace only, and the
	// admission policy that ties every node's writes to its own name.
	for _, f := range []string{filepath.Join("rbac", "role.yaml"), filepath.Join("admission", "node-policy.yaml")} {
		if err := l.applyFile(ctx, filepath.Join(l.opts.Root, "install", f)); err != nil {
			return err
		}
	}
	leaseBinding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "wirelace-node-leases", Namespace: Namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "wirelace-node-leases"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: serviceAccount, Namespace: Namespace}},
	}
	if _, err := l.Core.RbacV1().RoleBindings(Namespace).Create(ctx, leaseBinding, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create RoleBinding %s: %w", leaseBinding.Name, err)
	}
	return nil
}

// installKinds maps the kinds install/ ships, other than CRDs and the
// ClusterRoles above, to their resources.
var installKinds = map[string]schema.GroupVersionResource{
	"Role":                             {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	"ValidatingAdmissionPolicy":        {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"},
	"ValidatingAdmissionPolicyBinding": {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicybindings"},
}

// applyFile creates every object of a (multi-document) YAML file, as
// kubectl apply would on a fresh cluster.
func (l *Lab) applyFile(ctx context.Context, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvr, ok := installKinds[obj.GetKind()]
		if !ok {
			return fmt.Errorf("%s: the lab does not know how to create a %s", path, obj.GetKind())
		}
		var res dynamic.ResourceInterface = l.Dynamic.Resource(gvr)
		if ns := obj.GetNamespace(); ns != "" {
			res = l.Dynamic.Resource(gvr).Namespace(ns)
		}
		if _, err := res.Create(ctx, &obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create %s %s from %s: %w", obj.GetKind(), obj.GetName(), path, err)
		}
	}
	return nil
}

func readYAML(path string, into any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}
