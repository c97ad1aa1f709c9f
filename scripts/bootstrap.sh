#!/usr/bin/env bash
# Installs what ppg-mi needs on a Debian machine with Java 17, Maven, Go and Python 3.11.
#
#   scripts/bootstrap.sh demo   what `make demo` needs: the runtime Python packages and Kafka's jars
#   scripts/bootstrap.sh test   what `make test` needs besides: the test extras, helm, Debian's
#                               prometheus and chromium, the project image (scripts/image.sh) and
#                               the single-node Kubernetes of the cluster tier (scripts/cluster/)
#
# Safe to run again: each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${1:-test}"
CACHE="${PPG_MI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ppg-mi}"
HELM_VERSION="v3.22.0"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
# also pins the build backend in pip's isolated build environment (`-c` does not reach it)
export PIP_CONSTRAINT="$PWD/constraints.txt"

step() { printf '\n==> %s\n' "$*"; }

case "$PROFILE" in
  demo) extras="" ;;
  test) extras="[test]" ;;
  *) echo "usage: $0 [demo|test]" >&2; exit 2 ;;
esac

if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  "$PYTHON" -m venv .venv
fi
# a stamp of what was installed from which lock: an unchanged set-up costs no pip run, and the
# test set-up includes the demo's
stamp=".venv/.ppg-mi-installed"
lock="$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-16)"
installed="$(cat "$stamp" 2>/dev/null || true)"
if [ "$installed" != "test $lock" ] && [ "$installed" != "$PROFILE $lock" ]; then
  step "installing Python packages from constraints.txt${extras:+ (with the test extras)}"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".$extras"
  echo "$PROFILE $lock" > "$stamp"
fi

step "fetching Apache Kafka jars (cache: $CACHE)"
.venv/bin/ppg-mi kafka fetch

if [ "$PROFILE" = demo ]; then
  step "ready for the demo"
  exit 0
fi

if [ ! -x "$CACHE/bin/helm" ]; then
  step "building helm $HELM_VERSION with go install"
  (cd /tmp && GOBIN="$CACHE/bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
fi

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

step "building the project image with podman (scripts/image.sh)"
bash scripts/image.sh build

step "the single-node Kubernetes of the cluster tier: containerd and runc, control plane built with go (scripts/cluster/)"
bash scripts/cluster/install-packages.sh
bash scripts/cluster/build.sh
step "ready for the tests"
