#!/usr/bin/env bash
# A local cluster for `skaffold dev`: kind (or the current minikube context with CLUSTER=minikube),
# the Strimzi operator, KEDA, kube-prometheus-stack and the dev-size Kafka.  Safe to run again.
# The pinned versions are the ones the chart's custom resources are validated against
# (tests/chart/, ../shared/crds/).  Needs: kind or minikube, kubectl, helm.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${CLUSTER:-kind}"
NAME="${KIND_CLUSTER_NAME:-ppg-mi}"
NAMESPACE="${NAMESPACE:-ppg-mi}"
STRIMZI_VERSION=1.2.0
KEDA_VERSION=2.20.2
KUBE_PROMETHEUS_STACK_VERSION=88.0.0   # ships prometheus-operator 0.93.0

step() { printf '\n==> %s\n' "$*"; }

if [ "$CLUSTER" = kind ]; then
  if ! kind get clusters | grep -qx "$NAME"; then
    step "creating kind cluster $NAME"
    kind create cluster --name "$NAME" --wait 120s
  fi
  kubectl config use-context "kind-$NAME"
else
  minikube status >/dev/null || minikube start --cpus 4 --memory 8g
  kubectl config use-context minikube
fi

step "helm repositories"
helm repo add strimzi https://strimzi.io/charts/ --force-update >/dev/null
helm repo add kedacore https://kedacore.github.io/charts --force-update >/dev/null
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
helm repo update >/dev/null

step "kube-prometheus-stack $KUBE_PROMETHEUS_STACK_VERSION (namespace monitoring)"
helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  --version "$KUBE_PROMETHEUS_STACK_VERSION" --namespace monitoring --create-namespace \
  -f k8s/monitoring/kube-prometheus-stack-values.yaml --wait --timeout 10m

step "Strimzi $STRIMZI_VERSION operator (namespace strimzi, watching $NAMESPACE)"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NAMESPACE" pod-security.kubernetes.io/enforce=restricted --overwrite
helm upgrade --install strimzi strimzi/strimzi-kafka-operator --version "$STRIMZI_VERSION" \
  --namespace strimzi --create-namespace --set "watchNamespaces={$NAMESPACE}" --wait --timeout 10m

step "KEDA $KEDA_VERSION (namespace keda)"
helm upgrade --install keda kedacore/keda --version "$KEDA_VERSION" \
  --namespace keda --create-namespace --wait --timeout 10m

step "dev Kafka (namespace $NAMESPACE)"
kubectl -n "$NAMESPACE" apply -f k8s/strimzi/kafka-dev.yaml
kubectl -n "$NAMESPACE" apply -f k8s/monitoring/kafka-podmonitor.yaml
kubectl -n "$NAMESPACE" wait kafka/ppg-kafka --for=condition=Ready --timeout=600s

step "ready: now run \`make dev\` (skaffold dev)"
