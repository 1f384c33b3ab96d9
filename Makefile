# Zoll: `make run` starts the service on the embedded default, `make test` runs everything.
# Both set themselves up on a fresh machine (virtualenv, Python and Debian packages).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEBS := skopeo buildah docker-registry busybox-static softhsm2 apache2-utils chromium
PYTEST_ARGS ?= -n auto

.PHONY: run test lint typecheck unit debs venv bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## Debian packages the tests drive as real OCI clients and upstreams.
debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing — run 'sudo apt-get install$$missing' or make test as root"; exit 1; \
	  fi; \
	fi

## make run PORT=5001 to listen elsewhere (default 5000)
run: $(STAMP)
	$(BIN)/zoll serve $(if $(PORT),--port $(PORT))

lint: $(STAMP)
	$(BIN)/ruff check registry attest policy tests bench
	$(BIN)/ruff format --check registry attest policy tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test: debs $(STAMP) lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

bench: debs $(STAMP)
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
