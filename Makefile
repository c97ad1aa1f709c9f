# ppg-mi — the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
CACHE ?= $(or $(PPG_MI_CACHE_DIR),$(HOME)/.cache/ppg-mi)
export PATH := $(CURDIR)/$(BIN):$(CACHE)/bin:$(PATH)

.PHONY: setup demo test test-unit test-integration lint-chart cluster dev clean

setup:  ## install Python packages, Kafka jars, helm, prometheus and chromium
	bash scripts/bootstrap.sh

demo: setup  ## local Kafka + every stage + the dashboard on synthetic data
	$(BIN)/ppg-mi demo

test: setup  ## the whole suite against a real broker started for the session
	$(BIN)/python -m pytest -q

test-unit: ## pure-logic tests only (no broker)
	$(BIN)/python -m pytest -q tests/unit

cluster:  ## kind cluster + Strimzi, KEDA, kube-prometheus-stack and the dev Kafka (CLUSTER=minikube for minikube)
	bash k8s/cluster.sh

dev:  ## skaffold dev: build the image, deploy the chart, forward the dashboard (:8501) and Grafana (:3000)
	skaffold dev --port-forward

clean:
	rm -rf .pytest_cache .hypothesis artifacts
