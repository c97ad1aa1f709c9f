#!/usr/bin/env bash
# Debian packages the single-node Kubernetes test tier runs under its kubelet:
# containerd (the CRI runtime, 1.6 on Debian 12), runc, and the CNI plugins
# (only `loopback` is used). Installs only what is missing; sudo only if not root.
set -euo pipefail
PKGS=(containerd runc containernetworking-plugins iptables)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "cluster packages: present (${PKGS[*]})"
  exit 0
fi
SUDO=()
[[ "$(id -u)" -eq 0 ]] || SUDO=(sudo)
echo "cluster packages: installing ${missing[*]}"
"${SUDO[@]}" apt-get update -qq
# the tier starts its own containerd (private socket, root and state); a system one, if the
# package's service starts, is neither used nor touched
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
