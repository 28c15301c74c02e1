package k8s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/wirelace/wirelace/e2e/labbuild"
	"github.com/wirelace/wirelace/e2e/proc"
)

// Controllers make the control plane one that real nodes can join: it runs
// kube-controller-manager (Node pod CIDRs, ReplicaSets, DaemonSets, Jobs,
// ServiceAccounts, garbage collection) and kube-scheduler, and the API server
// authenticates and restricts kubelets as nodes (Node authorizer,
// NodeRestriction admission). Labs whose nodes are only daemons need none of
// this and start faster without it.
type Controllers struct {
	// Binaries: ControllerManager and Scheduler are used.
	Binaries labbuild.NodeBinaries
	// ClusterCIDRs are the pools Node.spec.podCIDRs are allocated from, at
	// most one per family (default: 10.244.0.0/16 and fd44:1ace::/48, which
	// are also wirelaced's default cluster CIDRs). Nodes get a /24 and a /64.
	ClusterCIDRs []string
}

// Sizes of the pod CIDRs kube-controller-manager gives each Node.
const (
	nodeCIDRMaskIPv4 = 24
	nodeCIDRMaskIPv6 = 64
)

// The users kube-controller-manager and kube-scheduler authenticate as:
// RBAC's bootstrap policy grants them their roles.
const (
	controllerManagerUser = "system:kube-controller-manager"
	schedulerUser         = "system:kube-scheduler"
	// controllersReadyTimeout bounds the wait for the first controller
	// results: the default ServiceAccount of the default namespace.
	controllersReadyTimeout = 60 * time.Second
)

func (o *Controllers) defaults() error {
	if o.Binaries.ControllerManager == "" || o.Binaries.Scheduler == "" {
		return errors.New("Options.Controllers.Binaries: kube-controller-manager and kube-scheduler paths are required (see labbuild.EnsureNodeBinaries)")
	}
	if len(o.ClusterCIDRs) == 0 {
		o.ClusterCIDRs = []string{"10.244.0.0/16", "fd44:1ace::/48"}
	}
	families := map[bool]bool{}
	for _, s := range o.ClusterCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("Options.Controllers.ClusterCIDRs: %w", err)
		}
		if families[p.Addr().Is4()] {
			return fmt.Errorf("Options.Controllers.ClusterCIDRs %v: at most one per family", o.ClusterCIDRs)
		}
		families[p.Addr().Is4()] = true
	}
	return nil
}

// controllerSetup is what Start prepares for Controllers before the API
// server starts: the controllers' tokens, and a CA for node client
// certificates whose certificate joins the lab CA in the API server's
// --client-ca-file.
type controllerSetup struct {
	kcmToken, schedulerToken string
	nodeCA                   *x509.Certificate
	nodeCAKey                *ecdsa.PrivateKey

	controllerManager, scheduler *proc.Process
}

// clientCAPath is the API server's --client-ca-file with Controllers: the
// lab CA and the node CA in one bundle.
func clientCAPath(f pkiFiles) string { return filepath.Join(filepath.Dir(f.CACert), "client-ca.crt") }

// newControllerSetup makes the tokens and the node CA and writes the client
// CA bundle. A separate CA for node certificates keeps the serving PKI
// (certs.go) as it is: nodes are added after Start, so static tokens, read
// once by the API server, cannot name them; a certificate can be signed
// for any node at any time.
func newControllerSetup(f pkiFiles, labCA []byte) (*controllerSetup, error) {
	s := &controllerSetup{}
	var err error
	if s.kcmToken, err = randomToken(); err != nil {
		return nil, err
	}
	if s.schedulerToken, err = randomToken(); err != nil {
		return nil, err
	}
	if s.nodeCAKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("generate node CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "wirelace-lab-node-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &s.nodeCAKey.PublicKey, s.nodeCAKey)
	if err != nil {
		return nil, fmt.Errorf("create node CA: %w", err)
	}
	if s.nodeCA, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	bundle := append(append([]byte(nil), labCA...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(clientCAPath(f), bundle, 0o644); err != nil {
		return nil, fmt.Errorf("write client CA bundle: %w", err)
	}
	return s, nil
}

func (s *controllerSetup) tokens() []Token {
	return []Token{
		{Token: s.kcmToken, User: controllerManagerUser},
		{Token: s.schedulerToken, User: schedulerUser},
	}
}

// withNodeAuth turns the API server flags of a lab without nodes into those
// of a cluster with kubelets:
//   - Node authorization before RBAC and NodeRestriction admission, so each
//     kubelet may read and write only what belongs to its own node;
//   - ServiceAccount admission back on: kube-controller-manager now creates
//     every namespace's default ServiceAccount, and pods get the projected
//     token volume their workloads (a CNI DaemonSet) need;
//   - node client certificates accepted (clientCAPath);
//   - logs and exec reach a kubelet at its InternalIP: lab nodes have no
//     resolvable host names.
func withNodeAuth(args []string, f pkiFiles) []string {
	replace := map[string]string{
		"--authorization-mode":        "--authorization-mode=Node,RBAC",
		"--disable-admission-plugins": "--enable-admission-plugins=NodeRestriction",
		"--client-ca-file":            "--client-ca-file=" + clientCAPath(f),
	}
	out := make([]string, 0, len(args)+1)
	for _, a := range args {
		flag, _, _ := strings.Cut(a, "=")
		if r, ok := replace[flag]; ok {
			a = r
		}
		out = append(out, a)
	}
	return append(out, "--kubelet-preferred-address-types=InternalIP")
}

// startControllers starts kube-controller-manager and kube-scheduler next to
// the API server and waits until the controllers work: the default
// namespace has its default ServiceAccount, without which no pod can be
// created.
func (c *ControlPlane) startControllers(ctx context.Context, f pkiFiles) error {
	o := c.opts.Controllers
	kcmConfig := filepath.Join(c.opts.Dir, "controller-manager.kubeconfig")
	schedConfig := filepath.Join(c.opts.Dir, "scheduler.kubeconfig")
	if err := c.WriteKubeconfig(kcmConfig, c.ctl.kcmToken); err != nil {
		return err
	}
	if err := c.WriteKubeconfig(schedConfig, c.ctl.schedulerToken); err != nil {
		return err
	}
	var err error
	c.ctl.controllerManager, err = proc.Start("kube-controller-manager", filepath.Join(c.opts.Dir, "controller-manager.log"),
		inNetNS(c.opts.NetNS, o.Binaries.ControllerManager, controllerManagerArgs(o, f, kcmConfig)))
	if err != nil {
		return err
	}
	c.ctl.scheduler, err = proc.Start("kube-scheduler", filepath.Join(c.opts.Dir, "scheduler.log"),
		inNetNS(c.opts.NetNS, o.Binaries.Scheduler, schedulerArgs(schedConfig)))
	if err != nil {
		return err
	}
	if err := c.waitDefaultServiceAccount(ctx); err != nil {
		return fmt.Errorf("kube-controller-manager: %w\n--- last lines of %s ---\n%s",
			err, c.ctl.controllerManager.LogPath, c.ctl.controllerManager.LogTail(logTailLines))
	}
	if c.ctl.scheduler.Exited() {
		return fmt.Errorf("kube-scheduler exited: %v\n--- last lines of %s ---\n%s",
			c.ctl.scheduler.Err(), c.ctl.scheduler.LogPath, c.ctl.scheduler.LogTail(logTailLines))
	}
	return nil
}

func controllerManagerArgs(o *Controllers, f pkiFiles, kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		// Nothing scrapes or probes it; serving would need its own certs.
		"--secure-port=0",
		"--leader-elect=false",
		// Each controller acts as its own ServiceAccount with its own
		// bootstrap role, as in kubeadm clusters; the manager's own user
		// may only mint those tokens.
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + f.SAKey,
		// Published to every namespace as kube-root-ca.crt, for pods'
		// projected service-account volumes.
		"--root-ca-file=" + f.CACert,
		"--allocate-node-cidrs=true",
		"--cluster-cidr=" + strings.Join(o.ClusterCIDRs, ","),
		"--node-cidr-mask-size-ipv4=" + strconv.Itoa(nodeCIDRMaskIPv4),
		"--node-cidr-mask-size-ipv6=" + strconv.Itoa(nodeCIDRMaskIPv6),
		"--service-cluster-ip-range=" + serviceCIDR,
		"--profiling=false",
		"--v=2",
	}
}

func schedulerArgs(kubeconfig string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--secure-port=0",
		"--leader-elect=false",
		"--profiling=false",
		"--v=2",
	}
}

// waitDefaultServiceAccount polls until kube-controller-manager created the
// default namespace's default ServiceAccount.
func (c *ControlPlane) waitDefaultServiceAccount(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, controllersReadyTimeout)
	defer cancel()
	for {
		_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			return fmt.Errorf("read the default ServiceAccount: %w", err)
		}
		if c.ctl.controllerManager.Exited() {
			return fmt.Errorf("exited: %v", c.ctl.controllerManager.Err())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no default ServiceAccount in namespace default after %s", controllersReadyTimeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stopControllers stops the scheduler and the controller manager (before
// the API server, which they would otherwise keep retrying).
func (c *ControlPlane) stopControllers() error {
	if c.ctl == nil {
		return nil
	}
	var errs []error
	for _, p := range []*proc.Process{c.ctl.scheduler, c.ctl.controllerManager} {
		if p != nil {
			errs = append(errs, p.Stop(stopGrace))
		}
	}
	return errors.Join(errs...)
}

// WriteNodeKubeconfig writes a kubelet's kubeconfig for node name: a client
// certificate for user system:node:<name> in group system:nodes, which the
// Node authorizer and NodeRestriction recognise, signed by the node CA. It
// needs Options.Controllers. Like WriteKubeconfig it is for a process in the
// lab's namespaces, and 0600.
func (c *ControlPlane) WriteNodeKubeconfig(path, name string) error {
	if c.ctl == nil {
		return errors.New("WriteNodeKubeconfig: the control plane runs without Options.Controllers, so it accepts no node credentials")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key for node %s: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ctl.nodeCA, &key.PublicKey, c.ctl.nodeCAKey)
	if err != nil {
		return fmt.Errorf("sign certificate for node %s: %w", name, err)
	}
	keyPEM, err := ecKeyPEM(key)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[kubeconfigName] = &clientcmdapi.Cluster{Server: c.url, CertificateAuthorityData: c.CACert()}
	cfg.AuthInfos[kubeconfigName] = &clientcmdapi.AuthInfo{
		ClientCertificateData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		ClientKeyData:         keyPEM,
	}
	cfg.Contexts[kubeconfigName] = &clientcmdapi.Context{Cluster: kubeconfigName, AuthInfo: kubeconfigName}
	cfg.CurrentContext = kubeconfigName
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}
