#!/usr/bin/env bash
# Wirelace on a real Kubernetes cluster in Docker: create a kind cluster
# without a CNI (kind.yaml), build the image from the Dockerfile, load it
# into the nodes, install the Helm chart, and check that pods on every node
# reach pods on every other node through the mesh. Needs docker, kind,
# kubectl and helm; see README.md. KEEP=1 keeps the cluster afterwards.
set -euo pipefail

cd "$(dirname "$0")/../.."
cluster=wirelace
version=$(sed -n 's/^appVersion: *"\(.*\)"$/\1/p' install/helm/wirelace/Chart.yaml)
image="wirelace/wirelace:${version}"
ns=wirelace-system

log() { printf '\n== %s\n' "$*"; }

cleanup() {
  if [[ "${KEEP:-0}" == 1 ]]; then
    log "keeping cluster ${cluster}: kind delete cluster --name ${cluster}"
    return
  fi
  kind delete cluster --name "${cluster}"
}

log "create kind cluster ${cluster} (no CNI)"
kind create cluster --name "${cluster}" --config e2e/kind/kind.yaml
trap cleanup EXIT

log "build ${image} and load it into the nodes"
docker build -t "${image}" .
kind load docker-image "${image}" --name "${cluster}"

# The documented node prerequisite (install/deploy/README.md): wirelaced
# turns forwarding on itself only where /proc/sys is writable, which it is
# not in its unprivileged container.
log "node prerequisite: IPv6 forwarding on"
for node in $(kind get nodes --name "${cluster}"); do
  docker exec "${node}" sysctl -qw net.ipv6.conf.all.forwarding=1
done

# IPv4 pools, like the cluster. No relays: all nodes share kind's Docker
# network, so every pair goes direct.
log "helm install"
helm install wirelace install/helm/wirelace --namespace "${ns}" --create-namespace \
  --set 'daemon.meshCIDRs={10.77.0.0/16}' --set 'daemon.clusterCIDRs={10.244.0.0/16}' \
  --set relay.enabled=false --wait --timeout 5m
kubectl -n "${ns}" rollout status daemonset/wirelace --timeout 3m
kubectl wait --for=condition=Ready node --all --timeout 3m
kubectl get meshnodes -o wide

log "every node's status"
for pod in $(kubectl -n "${ns}" get pods -l app.kubernetes.io/component=node -o name); do
  kubectl -n "${ns}" exec "${pod}" -c wirelaced -- wirelacectl status
done

log "connectivity: one pod per node, each pings every other"
kubectl apply -f - <<'YAML'
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: pinger
  namespace: default
spec:
  selector:
    matchLabels: {app: pinger}
  template:
    metadata:
      labels: {app: pinger}
    spec:
      tolerations:
      - operator: Exists
      terminationGracePeriodSeconds: 1
      containers:
      - name: pinger
        image: busybox:1.36
        command: ["sleep", "3600"]
YAML
kubectl rollout status daemonset/pinger --timeout 3m

pods=$(kubectl get pods -l app=pinger -o jsonpath='{range .items[*]}{.metadata.name},{.status.podIP},{.spec.nodeName}{"\n"}{end}')
failed=0
for from in ${pods}; do
  for to in ${pods}; do
    [[ "${from}" == "${to}" ]] && continue
    IFS=, read -r from_pod _ from_node <<<"${from}"
    IFS=, read -r _ to_ip to_node <<<"${to}"
    if kubectl exec "${from_pod}" -- ping -c 3 -W 2 "${to_ip}" >/dev/null; then
      echo "ok    ${from_node} -> ${to_node} (${to_ip})"
    else
      echo "FAIL  ${from_node} -> ${to_node} (${to_ip})"
      failed=1
    fi
  done
done

if [[ "${failed}" != 0 ]]; then
  log "pod-to-pod connectivity failed"
  kubectl -n "${ns}" logs -l app.kubernetes.io/component=node -c wirelaced --tail 50
  exit 1
fi
log "all pods reach each other"
