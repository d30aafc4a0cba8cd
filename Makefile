# CityWok's commands. `make demo` and `make test` are the README's first two commands.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CITYWOK := $(VENV)/bin/citywok
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help setup demo test test-fast lint bench clean

help:
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# -P: until the editable install exists, nothing has loaded the standard library's `operator`, and
# this folder's operator/ (the package citywok.operator) must not be found first.
$(VENV)/.base: pyproject.toml
	$(PYTHON) -P -m venv $(VENV)
	$(PY) -P -m pip install -q --upgrade pip
	$(PY) -P -m pip install -q .  # the demo needs no editable install, nor the test and bench extras
	touch $@

$(VENV)/.installed: $(VENV)/.base
	$(PY) -P -m pip install -q -e '.[test,bench]'
	touch $@

setup: $(VENV)/.installed ## create .venv with citywok and the test tools

demo: $(VENV)/.base ## ingest generated episodes into ./data and identify a clip (no bucket, no cluster)
	@$(PY) -P -m citywok.demo

test: setup testbed lint ## the whole suite: lint, then unit, HTTP, S3, browser and Kubernetes test-bed tests
	$(PY) -m pytest -q

test-fast: setup ## tests that need neither the Kubernetes test bed, a browser nor Go
	$(PY) -m pytest -q -m "not k8s and not browser and not go"

lint: setup ## ruff, mypy on the package, import-linter's layer contracts, module and function sizes
	$(VENV)/bin/ruff check .
	$(PY) hack/lint.py types
	$(PY) hack/lint.py imports
	$(PY) hack/lint.py sizes

bench: setup ## engine benchmark on the real-music corpus, beside audfprint2
	$(PY) -m bench.engine

clean:
	rm -rf $(VENV) build *.egg-info

include hack/testbed.mk
include deploy.mk
