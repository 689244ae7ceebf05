# devyard: `make up` sets everything up and runs the manager; `make test` runs the whole suite.
# Both work as root on a fresh Debian machine with Python 3.11+, Node.js/npm and git.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBIAN_TEST_PACKAGES := chromium chromium-driver nginx openssh-server openssh-client rsync strace postgresql systemd buildah skopeo docker-registry busybox-static
DEBIAN_SANDBOX_PACKAGES := bubblewrap slirp4netns iproute2 openssh-server rsync

.PHONY: up setup engine sandbox-deps test-deps test test-fast lint bench bench-lifecycle bench-deps soak clean

up: setup engine sandbox-deps  ## install everything, then run the manager on http://127.0.0.1:8000
	$(BIN)/devyard up

setup: $(STAMP)  ## the project's virtual environment with the locked dependencies

$(STAMP): pyproject.toml requirements.lock
	@echo "==> Python environment ($(VENV))"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

engine: setup  ## Node 24 + code-server into ~/.cache/devyard (skipped when cached)
	@echo "==> Engine"
	$(BIN)/devyard engine install

sandbox-deps:  ## bubblewrap and slirp4netns: a sandbox per workspace; sshd and rsync: SSH into it (root installs them; `devyard doctor` says what is missing otherwise)
	@if command -v bwrap >/dev/null && command -v slirp4netns >/dev/null && command -v ip >/dev/null && [ -x /usr/sbin/sshd ] && command -v rsync >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "==> Debian packages: $(DEBIAN_SANDBOX_PACKAGES)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_SANDBOX_PACKAGES) >/dev/null; \
	else echo "note: workspaces are not sandboxed without: sudo apt-get install -y $(DEBIAN_SANDBOX_PACKAGES)"; fi

test-deps:  ## Debian's Chromium (browser tests), nginx (reverse-proxy tests), sshd (git over ssh), strace (hot-path test), PostgreSQL (store and replica tests), systemd (systemd-analyze checks the unit), buildah, skopeo, a registry and busybox (devcontainer builds on the test node); root installs them
	@if [ -x /usr/bin/chromium ] && [ -x /usr/sbin/nginx ] && [ -x /usr/sbin/sshd ] && [ -x /usr/bin/strace ] && [ -x /usr/bin/systemd-analyze ] && [ -x /usr/bin/buildah ] && [ -x /usr/bin/skopeo ] && [ -x /usr/bin/docker-registry ] && [ -x /bin/busybox ] && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "==> Debian packages: $(DEBIAN_TEST_PACKAGES)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_TEST_PACKAGES) >/dev/null; \
	else echo "browser tests need: sudo apt-get install -y $(DEBIAN_TEST_PACKAGES)"; exit 1; fi

test: setup engine sandbox-deps test-deps lint  ## the whole suite: lint, unit, API, CLI, gateway, real engine, headless Chromium
	$(BIN)/python -m pytest

test-fast: setup  ## the in-process tier: the state machine on an in-memory backend, the layers, unit tests (seconds)
	$(BIN)/python -m pytest -m fast

lint: setup  ## ruff: lint and format checks (fix with: .venv/bin/ruff check --fix . && .venv/bin/ruff format .)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-deps:  ## what the benchmarks compare with and load with: Debian's nginx and wrk; root installs them
	@if [ -x /usr/sbin/nginx ] && command -v wrk >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "==> Debian packages: nginx wrk"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null; \
	else echo "the benchmarks need: sudo apt-get install -y nginx wrk"; exit 1; fi

bench: setup engine bench-deps  ## the benchmark suite: gateway, workbench, start, density; one table of targets (bench/results/)
	$(BIN)/python bench/all.py

bench-lifecycle: setup engine  ## crash detection, restart, adoption, reconnection grace
	$(BIN)/python bench/lifecycle.py

soak: setup engine  ## 30 minutes of ten users' creates, opens, WebSocket typing, stops, deletes (MINUTES=5 for less)
	$(BIN)/python bench/soak.py --minutes $(or $(MINUTES),30)

clean:
	rm -rf $(VENV) .pytest_cache
