package k8s

import (
	"errors"
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeconfigName names the cluster, user and context in written kubeconfigs.
const kubeconfigName = "wirelace-lab"

// WriteKubeconfig writes a kubeconfig for a daemon running inside a lab
// namespace: the server URL, the CA inline (the daemon may not see Dir) and
// the given bearer token, e.g. one of Options.Tokens. The file is 0600 as it
// holds a credential. A process in the host namespace cannot reach the URL
// with it alone; use RESTConfig there.
func (c *ControlPlane) WriteKubeconfig(path, token string) error {
	if token == "" {
		return errors.New("WriteKubeconfig: token is required (AdminToken or one of Options.Tokens)")
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[kubeconfigName] = &clientcmdapi.Cluster{
		Server:                   c.url,
		CertificateAuthorityData: c.CACert(),
	}
	cfg.AuthInfos[kubeconfigName] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[kubeconfigName] = &clientcmdapi.Context{Cluster: kubeconfigName, AuthInfo: kubeconfigName}
	cfg.CurrentContext = kubeconfigName
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}
