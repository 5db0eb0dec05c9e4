# The two commands a newcomer needs are `make demo` and `make test`; both install what they
# need into .venv first. Backing services for the tests (PostgreSQL, versitygw, Kafka) are
# installed into ~/.cache/tusk and started by the tests themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: demo test test-host lint check-types services install clean e2e e2e-kube e2e-all e2e-skaffold-dev bench-pods peers

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## demo: the walkthrough on the embedded defaults (SQLite + a local directory, no servers)
demo: $(STAMP)
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

## services: install (or reuse) PostgreSQL, versitygw, Kafka, kube-apiserver + etcd and Chromium
services: $(STAMP)
	$(BIN)/python -m tests.backing install
	$(BIN)/python -m tests.backing.kube install
	$(BIN)/python -m tests.deploy.tools install
	$(BIN)/python -m tests.backing.browser install

## peers: install (or reuse) the peers the benchmarks measure tusk against, each in its own
## virtualenv under ~/.cache/tusk/peers: DVC (S3), KServe, MLServer, tritonclient. Not part of
## make test; loadtest/bench_peers_*.py install what they need themselves.
peers: $(STAMP)
	$(BIN)/python -m loadtest.peers.install

## lint: ruff, import-linter contracts and mypy (strict on libs and services)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

## test: everything: lint, the whole suite against real PostgreSQL, Kafka, S3 and
## kube-apiserver, then every container scenario of e2e-all (real images; root)
test: test-host
	$(MAKE) --no-print-directory e2e-all

## test-host: lint and the suite on this host only, without containers (the quick loop)
test-host: lint services
	$(BIN)/python -m pytest -q -p no:cacheprovider

## e2e: every image built from the Dockerfiles, then docker compose for real (root)
e2e: $(STAMP)
	PYTHON=$(CURDIR)/$(BIN)/python bash e2e/run.sh

## e2e-kube: the chart on a real two-node Kubernetes cluster: shards as pods, a node lost (root)
e2e-kube: $(STAMP)
	PYTHON=$(CURDIR)/$(BIN)/python E2E_TESTS="e2e/test_kubernetes.py e2e/test_kube_faults.py e2e/test_skaffold.py e2e/test_skaffold_dev.py" E2E_IMAGES="base standins tusk" bash e2e/run.sh

## e2e-all: both of the above in one run, one engine, one cluster (what CI would run)
e2e-all: $(STAMP)
	PYTHON=$(CURDIR)/$(BIN)/python E2E_TESTS="e2e/test_compose.py e2e/test_kubernetes.py e2e/test_kube_faults.py e2e/test_skaffold.py e2e/test_skaffold_dev.py" E2E_IMAGES="base standins tusk" bash e2e/run.sh

## e2e-skaffold-dev: `skaffold dev` alone on the cluster of e2e-kube, redeploying an edit (root;
## also part of e2e-kube / e2e-all)
e2e-skaffold-dev: $(STAMP)
	PYTHON=$(CURDIR)/$(BIN)/python E2E_TESTS="e2e/test_skaffold_dev.py" E2E_IMAGES="base standins tusk" bash e2e/run.sh

## bench-pods: commit -> first datum in a pod vs `kubectl run`, 100 datums on two nodes vs the
## LocalRunner (loadtest/bench_pods.py, on the cluster of e2e-kube; root)
bench-pods: $(STAMP)
	PYTHON=$(CURDIR)/$(BIN)/python E2E_RUN=loadtest.bench_pods E2E_IMAGES="base standins tusk" bash e2e/run.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
