#!/usr/bin/env bash
# Installs everything ppg-mi and its tests need on a Debian machine with Java 17, Maven,
# Go and Python 3.11: the Python environment from the lock, Kafka's jars, helm, and the
# Debian packages prometheus and chromium.  Safe to run again: each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${PPG_MI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ppg-mi}"
HELM_VERSION="v3.22.0"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

step() { printf '\n==> %s\n' "$*"; }

if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  "$PYTHON" -m venv .venv
fi
step "installing Python packages from constraints.txt"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[test]'

step "fetching Apache Kafka jars (cache: $CACHE)"
.venv/bin/ppg-mi kafka fetch

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
step "ready"
