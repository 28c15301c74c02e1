package k8s

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/wirelace/wirelace/e2e/labbuild"
	"github.com/wirelace/wirelace/e2e/proc"
)

// Token is a static bearer token for the API server's --token-auth-file.
type Token struct {
	Token  string
	User   string
	Groups []string
}

// Options configure a lab control plane.
type Options struct {
	Binaries labbuild.Binaries
	// Dir holds the state: etcd data, certificates, the token file and the
	// logs apiserver.log and etcd.log. Every Start begins with empty etcd data.
	Dir string
	// NetNS is a network namespace name (as in `ip netns`) to run both
	// processes in; "" runs them in the host namespace.
	NetNS string
	// AdvertiseIP is the address the API server binds to and advertises. It
	// must exist in NetNS. Defaults to 127.0.0.1 when NetNS is "".
	AdvertiseIP netip.Addr
	// Port is the API server's secure port; default 6443.
	Port int
	// Tokens are extra static tokens, e.g. one per lab node. An admin token
	// in group system:masters is always created.
	Tokens []Token
	// Controllers, if set, also runs kube-controller-manager and
	// kube-scheduler and lets kubelets join (see controllers.go).
	Controllers *Controllers
}

// Timeouts for Start and Stop.
const (
	etcdReadyTimeout      = 30 * time.Second
	apiserverReadyTimeout = 90 * time.Second
	stopGrace             = 5 * time.Second
	logTailLines          = 40
)

// Fixed facts of the lab cluster's configuration.
const (
	serviceCIDR          = "10.96.0.0/16"
	serviceAccountIssuer = "https://kubernetes.default.svc"
	adminUser            = "wirelace-lab-admin"
)

// ControlPlane is a running etcd + kube-apiserver pair.
type ControlPlane struct {
	opts       Options
	url        string
	caCert     []byte
	adminToken string
	dial       dialFunc

	etcd, apiserver *proc.Process
	ctl             *controllerSetup // with Options.Controllers

	stopOnce sync.Once
	stopErr  error
}

// Start runs etcd and kube-apiserver and returns once the API server's
// /readyz succeeds. ctx bounds only the start-up: the processes run until
// Stop (or until the calling process dies, see proc.Start). On failure
// everything started is stopped again and the error carries the last lines
// of the failing component's log.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	etcdData := filepath.Join(opts.Dir, "etcd")
	if err := os.RemoveAll(etcdData); err != nil {
		return nil, fmt.Errorf("clear old etcd data: %w", err)
	}
	if opts.NetNS != "" {
		if _, err := os.Stat(netnsPath(opts.NetNS)); err != nil {
			return nil, fmt.Errorf("network namespace %q: %w", opts.NetNS, err)
		}
		// etcd listens on 127.0.0.1 inside the namespace; a fresh namespace
		// has lo down.
		if err := ipCmd(ctx, "-n", opts.NetNS, "link", "set", "lo", "up"); err != nil {
			return nil, fmt.Errorf("bring up lo in %s: %w", opts.NetNS, err)
		}
	}
	clientPort, peerPort, err := etcdPorts(opts.NetNS)
	if err != nil {
		return nil, err
	}

	keys, err := newPKI(opts.AdvertiseIP)
	if err != nil {
		return nil, err
	}
	files, err := keys.write(filepath.Join(opts.Dir, "pki"))
	if err != nil {
		return nil, err
	}
	adminToken, err := randomToken()
	if err != nil {
		return nil, err
	}
	tokens := append([]Token{{Token: adminToken, User: adminUser, Groups: []string{"system:masters"}}}, opts.Tokens...)
	var ctl *controllerSetup
	if opts.Controllers != nil {
		if ctl, err = newControllerSetup(files, keys.caCert); err != nil {
			return nil, err
		}
		tokens = append(tokens, ctl.tokens()...)
	}
	tokenFile := filepath.Join(opts.Dir, "tokens.csv")
	if err := writeTokenFile(tokenFile, tokens); err != nil {
		return nil, err
	}

	c := &ControlPlane{
		opts:       opts,
		url:        "https://" + net.JoinHostPort(opts.AdvertiseIP.String(), strconv.Itoa(opts.Port)),
		caCert:     keys.caCert,
		adminToken: adminToken,
		dial:       DialerIn(opts.NetNS),
		ctl:        ctl,
	}

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	c.etcd, err = proc.Start("etcd", filepath.Join(opts.Dir, "etcd.log"),
		inNetNS(opts.NetNS, opts.Binaries.Etcd, etcdArgs(etcdData, clientPort, peerPort)))
	if err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx, c.etcd, etcdURL+"/health", etcdReadyTimeout); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("etcd did not become healthy: %w\n--- last lines of %s ---\n%s",
			err, c.etcd.LogPath, c.etcd.LogTail(logTailLines))
	}

	c.apiserver, err = proc.Start("kube-apiserver", filepath.Join(opts.Dir, "apiserver.log"),
		inNetNS(opts.NetNS, opts.Binaries.APIServer, apiserverArgs(opts, files, tokenFile, etcdURL)))
	if err != nil {
		_ = c.Stop()
		return nil, err
	}
	if err := c.waitReady(ctx, c.apiserver, c.url+"/readyz", apiserverReadyTimeout); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("kube-apiserver did not become ready at %s: %w\n--- last lines of %s ---\n%s",
			c.url, err, c.apiserver.LogPath, c.apiserver.LogTail(logTailLines))
	}
	if ctl != nil {
		if err := c.startControllers(ctx, files); err != nil {
			_ = c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// defaults validates opts and fills in defaults.
func (o *Options) defaults() error {
	if o.Binaries.APIServer == "" || o.Binaries.Etcd == "" {
		return errors.New("Options.Binaries: both kube-apiserver and etcd paths are required (see labbuild.EnsureBinaries)")
	}
	if o.Dir == "" {
		return errors.New("Options.Dir is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("resolve state dir: %w", err)
	}
	o.Dir = dir
	if !o.AdvertiseIP.IsValid() {
		if o.NetNS != "" {
			return errors.New("Options.AdvertiseIP is required with NetNS: it must be an address inside the namespace")
		}
		o.AdvertiseIP = netip.MustParseAddr("127.0.0.1")
	}
	if o.AdvertiseIP.IsUnspecified() {
		return fmt.Errorf("Options.AdvertiseIP %s: need a concrete address clients can reach", o.AdvertiseIP)
	}
	if o.Port == 0 {
		o.Port = 6443
	}
	if o.Port < 1 || o.Port > 65535 {
		return fmt.Errorf("Options.Port %d out of range", o.Port)
	}
	if o.Controllers != nil {
		ctl := *o.Controllers // defaults must not change the caller's
		o.Controllers = &ctl
		return o.Controllers.defaults()
	}
	return nil
}

// etcdPorts returns etcd's client and peer ports. In our own namespace the
// well-known ports cannot clash with anything; on the host they may, so
// free ports are picked instead.
func etcdPorts(netns string) (client, peer int, err error) {
	if netns != "" {
		return 2379, 2380, nil
	}
	ports := make([]int, 2)
	for i := range ports {
		// Holding both listeners until both ports are known keeps the two
		// from being the same; the remaining race with other processes is
		// acceptable for a lab.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, fmt.Errorf("pick free port for etcd: %w", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], nil
}

func etcdArgs(dataDir string, clientPort, peerPort int) []string {
	client := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	return []string{
		"--name=wirelace-lab",
		"--data-dir=" + dataDir,
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=wirelace-lab=" + peer,
		"--initial-cluster-state=new",
		// The data is thrown away with the lab; fsync only slows tests down.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}
}

func apiserverArgs(o Options, f pkiFiles, tokenFile, etcdURL string) []string {
	adv := o.AdvertiseIP.String()
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + adv,
		"--advertise-address=" + adv,
		"--secure-port=" + strconv.Itoa(o.Port),
		"--tls-cert-file=" + f.ServingCert,
		"--tls-private-key-file=" + f.ServingKey,
		// Nothing should be written to the default /var/run/kubernetes.
		"--cert-dir=" + filepath.Dir(f.ServingCert),
		"--client-ca-file=" + f.CACert,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-account-key-file=" + f.SAPub,
		"--service-account-signing-key-file=" + f.SAKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		// No other API server will maintain the kubernetes Service
		// endpoints, and the advertise address may not be routable.
		"--endpoint-reconciler-type=none",
		// No kube-controller-manager runs, so no namespace would ever get its
		// default ServiceAccount and every pod create would be rejected.
		"--disable-admission-plugins=ServiceAccount",
		// CNI daemons run privileged host-network pods.
		"--allow-privileged=true",
		"--profiling=false",
	}
	if o.Controllers != nil {
		args = withNodeAuth(args, f)
	}
	return args
}

// waitReady polls url (through the namespace-aware dialer) until it returns
// 200, p exits, the timeout passes or ctx is done.
func (c *ControlPlane) waitReady(ctx context.Context, p *proc.Process, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := c.httpClient()
	defer client.CloseIdleConnections()
	last := "no attempt yet"
	for {
		if p.Exited() {
			return fmt.Errorf("%s exited: %v", p.Name, p.Err())
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("build request: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last check: %s", ctx.Err(), last)
		case <-p.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// httpClient talks to the control plane from this process, whatever
// namespace it runs in, trusting only the lab CA.
func (c *ControlPlane) httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caCert)
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext:     c.dial,
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		},
	}
}

// Stop stops the API server, then etcd: with etcd gone first the API server
// keeps retrying and does not exit promptly. Each gets SIGTERM, then SIGKILL
// after a few seconds. Stop waits until both are reaped and may be called
// more than once.
func (c *ControlPlane) Stop() error {
	c.stopOnce.Do(func() {
		errs := []error{c.stopControllers()}
		if c.apiserver != nil {
			errs = append(errs, c.apiserver.Stop(stopGrace))
		}
		if c.etcd != nil {
			errs = append(errs, c.etcd.Stop(stopGrace))
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// URL is the API server's address, https://AdvertiseIP:Port.
func (c *ControlPlane) URL() string { return c.url }

// CACert is the PEM certificate of the CA that signed the serving cert.
func (c *ControlPlane) CACert() []byte { return append([]byte(nil), c.caCert...) }

// AdminToken is a bearer token of a user in group system:masters.
func (c *ControlPlane) AdminToken() string { return c.adminToken }

// RESTConfig returns an admin client configuration. Its Dial creates
// connections inside Options.NetNS, so it works from a process in the host
// namespace although the API server is reachable only inside the lab.
func (c *ControlPlane) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            c.url,
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CACert()},
		Dial:            c.dial,
		// Lab tests create many objects quickly; the default 5 QPS would
		// throttle them for no benefit.
		QPS:   100,
		Burst: 200,
	}
}

// randomToken returns 32 random bytes in hex, like kubeadm's static tokens.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// writeTokenFile writes the --token-auth-file CSV: token,user,uid,"g1,g2".
// The user name doubles as uid.
func writeTokenFile(path string, tokens []Token) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create token file: %w", err)
	}
	w := csv.NewWriter(f)
	for i, t := range tokens {
		if t.Token == "" || t.User == "" {
			_ = f.Close()
			return fmt.Errorf("token %d: Token and User are required", i)
		}
		fields := []string{t.Token, t.User, t.User, strings.Join(t.Groups, ",")}
		for _, s := range append(fields, t.Groups...) {
			if strings.ContainsAny(s, "\r\n\"") {
				_ = f.Close()
				return fmt.Errorf("token %d (user %q): quotes and newlines are not allowed", i, t.User)
			}
		}
		for _, g := range t.Groups {
			if g == "" || strings.Contains(g, ",") {
				_ = f.Close()
				return fmt.Errorf("token %d (user %q): group %q must be non-empty without commas", i, t.User, g)
			}
		}
		if strings.ContainsAny(t.Token, ", ") {
			_ = f.Close()
			return fmt.Errorf("token %d (user %q): token must not contain commas or spaces", i, t.User)
		}
		if err := w.Write(fields); err != nil {
			_ = f.Close()
			return fmt.Errorf("write token file: %w", err)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		_ = f.Close()
		return fmt.Errorf("write token file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close token file: %w", err)
	}
	return nil
}
