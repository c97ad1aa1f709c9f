# ppg-mi — the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
CACHE ?= $(or $(PPG_MI_CACHE_DIR),$(HOME)/.cache/ppg-mi)
export PATH := $(CURDIR)/$(BIN):$(CACHE)/bin:$(PATH)

.PHONY: setup setup-demo demo test test-unit image cluster dev clean

setup:  ## everything the tests need: Python packages with test extras, Kafka jars, helm, prometheus, chromium, the image
	bash scripts/bootstrap.sh test

setup-demo:  ## only what the demo needs: the runtime Python packages and Kafka's jars
	bash scripts/bootstrap.sh demo

# Ctrl-C stops the demo cleanly (exit status 130): that is how it is meant to end, not a failure
demo: setup-demo  ## local Kafka + every stage + the dashboard on synthetic data
	@$(BIN)/ppg-mi demo || [ $$? -eq 130 ]

test: setup  ## the whole suite against a real broker started for the session
	$(BIN)/python -m pytest -q --durations=12

test-unit: ## pure-logic tests only (no broker)
	$(BIN)/python -m pytest -q tests/unit

image:  ## build the project image with podman from images/Dockerfile (no Docker engine needed)
	bash scripts/image.sh build

cluster:  ## kind cluster + Strimzi, KEDA, kube-prometheus-stack and the dev Kafka (CLUSTER=minikube for minikube)
	bash k8s/cluster.sh

dev:  ## skaffold dev: build the image, deploy the chart, forward the dashboard (:8501) and Grafana (:3000)
	skaffold dev --port-forward

clean:
	rm -rf .pytest_cache .hypothesis artifacts
