#!/usr/bin/env bash
# Installs the Debian packages the lab uses, if any is missing. Runs on every
# `make test` and `make demo`, so a fresh machine needs nothing by hand.
set -euo pipefail

declare -A pkg=(
  [nft]=nftables [wg]=wireguard-tools [iperf3]=iperf3 [socat]=socat
  [tcpdump]=tcpdump [conntrack]=conntrack [ping]=iputils-ping [ethtool]=ethtool
  [ip]=iproute2 [unshare]=util-linux [nsenter]=util-linux [runc]=runc
)
missing=()
for cmd in "${!pkg[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "lab packages missing (${missing[*]}); run as root so they can be installed" >&2
  exit 1
fi
echo "installing lab packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
