#!/usr/bin/env bash
# Build the binaries of the single-node Kubernetes test tier from the Go module
# proxy, cached by version:
#   ${PPG_MI_CACHE_DIR:-$HOME/.cache/ppg-mi}/k8s/<version>/bin/
#     kube-apiserver kube-controller-manager kube-scheduler kubelet etcd pause
#     kubectl (for debugging; about 50 CPU-seconds more; PPG_MI_K8S_KUBECTL=0 skips it)
#   .../k8s/<version>/images/pause.tar   (docker-archive, localhost/ppg-mi/pause:1)
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod has replace directives),
# so a throwaway module requires it and replaces every staging module that it
# requires at v0.0.0 with the published v0.<minor>.<patch>. etcd is built in
# the same module (so at the version kubernetes pins) behind a wrapper main.
# A warm run (everything present) does nothing.
set -euo pipefail

K8S_VERSION="${PPG_MI_K8S_VERSION:-v1.37.2}"
CACHE="${PPG_MI_CACHE_DIR:-$HOME/.cache/ppg-mi}/k8s/${K8S_VERSION}"
BIN="$CACHE/bin"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
[[ "${PPG_MI_K8S_KUBECTL:-1}" == 1 ]] && CMDS+=(kubectl)

missing=()
for c in "${CMDS[@]}" etcd pause; do [[ -x "$BIN/$c" ]] || missing+=("$c"); done
[[ -f "$CACHE/images/pause.tar" ]] || missing+=(pause.tar)
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "cluster binaries ${K8S_VERSION}: cached in $BIN"
  exit 0
fi
echo "cluster binaries ${K8S_VERSION}: building ${missing[*]} into $BIN"

export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -trimpath -buildvcs=false"
mkdir -p "$BIN" "$CACHE/images"
MOD="$CACHE/gomod"

# --- the throwaway module ----------------------------------------------------
if [[ ! -f "$MOD/.ready" ]]; then
  rm -rf "$MOD"; mkdir -p "$MOD/etcd"
  kmod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" \
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  staging_version="v0.${K8S_VERSION#v1.}"
  {
    echo "module ppg-mi.local/k8s"
    echo
    grep -m1 '^go ' "$kmod"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    # every staging module kubernetes requires at v0.0.0 -> its published build
    awk '/^require \(/{r=1;next} r&&/^\)/{r=0} r&&$2=="v0.0.0"{print $1}' "$kmod" |
      sort -u | while read -r m; do echo "replace $m => $m ${staging_version}"; done
  } > "$MOD/go.mod"
  cp "$HERE/src/etcd/main.go" "$MOD/etcd/main.go"
  touch "$MOD/.ready"
fi

# --- control plane, kubelet, etcd ---------------------------------------------
pkgs=()
for c in "${missing[@]}"; do
  case "$c" in
    kube-*|kubelet|kubectl) pkgs+=("k8s.io/kubernetes/cmd/$c") ;;
    etcd) pkgs+=("./etcd") ;;
  esac
done
if [[ ${#pkgs[@]} -gt 0 ]]; then
  minor_major="${K8S_VERSION#v}"; minor_major="${minor_major%.*}"   # 1.37
  # -mod=mod: go.sum and the indirect requirements are filled in by the first build.
  # Into a staging directory first: an interrupted build never leaves a partial binary in bin/.
  rm -rf "$CACHE/bin.new"; mkdir -p "$CACHE/bin.new"
  (cd "$MOD" && go build -mod=mod \
     -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} \
-X k8s.io/component-base/version.gitMajor=${minor_major%%.*} \
-X k8s.io/component-base/version.gitMinor=${minor_major#*.} \
-X k8s.io/component-base/version.gitTreeState=clean" \
     -o "$CACHE/bin.new/" "${pkgs[@]}")
  mv "$CACHE"/bin.new/* "$BIN/"
  rmdir "$CACHE/bin.new"
fi

# --- pause: static binary and a one-layer docker-archive image -----------------
if [[ ! -x "$BIN/pause" ]]; then
  pdir="$CACHE/pause-src"; rm -rf "$pdir"; mkdir -p "$pdir"
  cp "$HERE/src/pause/main.go" "$pdir/"
  printf 'module ppg-mi.local/pause\n\ngo 1.22\n' > "$pdir/go.mod"
  (cd "$pdir" && go build -ldflags "-s -w" -o "$pdir/pause" . && mv "$pdir/pause" "$BIN/pause")
fi
python3 "$HERE/pause_image.py" "$BIN/pause" "$CACHE/images/pause.tar.tmp" localhost/ppg-mi/pause:1
mv "$CACHE/images/pause.tar.tmp" "$CACHE/images/pause.tar"
echo "cluster binaries ${K8S_VERSION}: done"
ls -la "$BIN"
