# Paddock — the two commands a new user needs:
#   make demo   bring up a local cluster (unless one is configured), install Paddock, run a sample AgentRun
#   make test   run the whole test suite (unit, CRD drift, chart checks, envtest, e2e on the local cluster)
SHELL := /bin/bash
.DEFAULT_GOAL := help
export PADDOCK_CACHE ?= /var/cache/paddock

.PHONY: help demo test unit envtest lint crds e2e drills bench fresh-check cluster-up cluster-down images

help: ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

demo: ## Run the main job end to end (local cluster, image, chart, sample AgentRun)
	bash e2e/demo.sh

test: ## Run every test: unit, CRD drift, chart checks, envtest, e2e on a real local cluster
	bash e2e/test-all.sh

unit: ## Unit tests, CRD drift test and lints only (no cluster)
	python3 checks/module-cycles.py --self-test
	python3 checks/module-cycles.py
	python3 checks/file-lines.py
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p paddock-operator --features envtest --all-targets -- -D warnings
	cargo test --workspace --exclude paddock-e2e

envtest: ## The operator against a real kube-apiserver and etcd, no kubelet: CRD rules, approval policy, RBAC (seconds warm)
	bash e2e/envtest.sh

crds: ## Regenerate the CRD YAML from the Rust types (crds/generated and the chart)
	cargo run -q -p paddock-crds --bin crdgen -- crds/generated/crds.yaml
	cp crds/generated/crds.yaml charts/paddock/crds/crds.yaml

e2e: ## The e2e suite only (brings the local cluster up if needed)
	bash e2e/run-e2e.sh

drills: ## Reliability drills on the local cluster (operator kills, control-plane restarts, drain; run alone, after `make e2e`) and cargo-fuzz
	bash e2e/drills.sh

bench: ## Benchmarks vs Tekton and agent-sandbox on the local cluster (prints tables; not part of make test)
	bash e2e/bench.sh $(ARGS)

fresh-check: ## The README's commands in a fresh clone with empty caches, timed (slow; not part of make test)
	bash e2e/fresh-check.sh

cluster-up: ## Bring up the local cluster (prints the kubeconfig path)
	bash e2e/cluster/cluster.sh up

cluster-down: ## Tear the local cluster down
	bash e2e/cluster/cluster.sh down

images: ## Build the runner and operator images and load them into the local cluster
	bash e2e/build-images.sh
