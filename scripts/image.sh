#!/usr/bin/env bash
# Builds the ppg-mi image from images/Dockerfile with podman: no Docker engine, no registry image.
#
#   scripts/image.sh            install podman's tools if missing, build the base, build the image
#   scripts/image.sh base       only the Python base (Debian packages through mmdebstrap)
#   scripts/image.sh save FILE  write the image as a docker-archive (for `ctr images import`)
#   scripts/image.sh podman ARGS...   run podman with the project's containers.conf
#
# The base is Debian bookworm's own python3.11 built by mmdebstrap from the machine's apt sources
# and handed to the unchanged Dockerfile through its PYTHON_IMAGE argument. podman runs with runc
# and pinned ulimits (crun fails on hybrid-cgroup VMs), and every container, build steps included,
# shares the host network: no bridge network is ever created.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${PPG_MI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ppg-mi}"
IMAGE="${PPG_MI_IMAGE:-localhost/ppg-mi:dev}"
SUITE="bookworm"
BASE_PACKAGES="python3 python3-venv ca-certificates netbase tzdata"
# the base's tag names what it is made of, so a changed package list builds a new one
BASE_IMAGE="localhost/ppg-mi-base:${SUITE}-$(printf '%s' "$SUITE $BASE_PACKAGES" | sha256sum | cut -c1-12)"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

step() { printf '\n==> %s\n' "$*" >&2; }

install_tools() {
  local need=()
  for tool in podman buildah runc mmdebstrap newuidmap fuse-overlayfs; do
    command -v "$tool" >/dev/null || need+=("$tool")
  done
  [ ${#need[@]} -eq 0 ] && return
  step "installing Debian packages for podman (missing: ${need[*]})"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    podman buildah runc uidmap fuse-overlayfs mmdebstrap >/dev/null
}

containers_conf() {
  local conf="$CACHE/containers/containers.conf" nofile
  nofile="$(ulimit -Hn)"; [ "$nofile" = unlimited ] && nofile=1048576
  mkdir -p "$(dirname "$conf")"
  cat > "$conf.tmp" <<EOF
# written by scripts/image.sh: runc (crun fails on these VMs), limits the machine allows, host network
[containers]
netns = "host"
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=16384:16384"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  mv "$conf.tmp" "$conf"
  export CONTAINERS_CONF="$conf"
}

build_base() {
  if podman image exists "$BASE_IMAGE"; then return; fi
  step "building the Python base $BASE_IMAGE from Debian packages (mmdebstrap)"
  local work sources=() aptopts=()
  work="$(mktemp -d)"
  # a RETURN trap outlives the function that set it (it fired again, `work` unset, when
  # build_image returned on a machine without the base): it clears itself
  trap 'rm -rf "${work:-}"; trap - RETURN' RETURN
  # the machine's own apt sources and Acquire settings (proxies, validity), so the base comes
  # from wherever this machine gets Debian packages
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sources=(- ); exec 3</etc/apt/sources.list.d/debian.sources
  elif [ -s /etc/apt/sources.list ]; then
    sources=(- ); exec 3</etc/apt/sources.list
  else
    exec 3</dev/null
  fi
  while IFS= read -r line; do aptopts+=(--aptopt="$line"); done < <(apt-config dump | grep '^Acquire::' || true)
  $SUDO mmdebstrap --quiet --variant=minbase --include="${BASE_PACKAGES// /,}" "${aptopts[@]}" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$SUITE" "$work/base.tar" "${sources[@]}" <&3
  exec 3<&-
  podman import --quiet --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' "$work/base.tar" "$BASE_IMAGE" >/dev/null
}

# pip's configuration and CA bundle as build secrets: mounted for the pip steps only
pip_secrets() {
  local conf="" ca=""
  for f in "${PIP_CONFIG_FILE:-}" "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf" /etc/pip.conf; do
    if [ -n "$f" ] && [ -f "$f" ]; then conf="$f"; break; fi
  done
  for f in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" "${REQUESTS_CA_BUNDLE:-}"; do
    if [ -n "$f" ] && [ -f "$f" ]; then ca="$f"; break; fi
  done
  [ -n "$conf" ] && printf -- '--secret\nid=pip-conf,src=%s\n' "$conf"
  [ -n "$ca" ] && printf -- '--secret\nid=pip-ca,src=%s\n' "$ca"
  return 0
}

build_image() {
  build_base
  step "building $IMAGE from images/Dockerfile (base $BASE_IMAGE)"
  local secrets=() previous
  mapfile -t secrets < <(pip_secrets)
  previous="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
  podman build --network=host --layers --quiet \
    -f images/Dockerfile --ignorefile images/Dockerfile.dockerignore \
    --build-arg PYTHON_IMAGE="$BASE_IMAGE" "${secrets[@]}" -t "$IMAGE" . >/dev/null
  podman image inspect --format '{{.Id}} {{.Size}}' "$IMAGE" \
    | awk -v image="$IMAGE" '{printf "==> %s: %s, %.0f MB\n", image, substr($1, 1, 12), $2 / 1e6}' >&2
  # the image this build replaced: about 800 MB of venv layer each time the sources change
  if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
  fi
}

install_tools
containers_conf
case "${1:-build}" in
  build) build_image ;;
  base) build_base ;;
  save) build_image; rm -f "$2"; podman save --format docker-archive -o "$2" "$IMAGE" ;;
  podman) shift; podman "$@" ;;
  *) echo "usage: $0 [build|base|save FILE|podman ARGS...]" >&2; exit 2 ;;
esac
