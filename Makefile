# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

REF       := .venv-ref
REF_STAMP := $(REF)/.installed

SPLINK       := .venv-splink
SPLINK_STAMP := $(SPLINK)/.installed

.PHONY: demo test venv ref splink chromium postgres proto lint bench quality clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# clkhash and anonlink, the references for bit-identity tests and benchmarks, in their own
# environment because they pin old dependencies.
# $(1): the environment's folder; $(2): its requirements file.
define own_venv
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade pip
	$(1)/bin/python -m pip install --quiet -r $(2)
	touch $(1)/.installed
endef

$(REF_STAMP): requirements-ref.txt
	$(call own_venv,$(REF),requirements-ref.txt)

ref: $(REF_STAMP)

# Splink, the plaintext ceiling of benchmarks/quality.py, in its own environment too.
$(SPLINK_STAMP): requirements-splink.txt
	$(call own_venv,$(SPLINK),requirements-splink.txt)

splink: $(SPLINK_STAMP)

# Debian's chromium, which the browser tests drive through Playwright (apt-get when missing; sudo
# when not root). Playwright never downloads a browser of its own.
chromium:
	bash scripts/ensure_chromium.sh

# Debian's PostgreSQL server, whose binaries the tests start as a throwaway server of their own
# (tests/postgres.py): the coordinator's PostgreSQL state and the node's SQL sources run on it.
postgres:
	bash scripts/ensure_postgres.sh

## Run a whole federation on localhost: coordinator + 3 nodes over mutual TLS.
demo: $(STAMP)
	$(VENV)/bin/oda-fed demo --workdir demo-run

## Install what is needed and run the whole test suite.
test: $(STAMP) $(REF_STAMP) chromium postgres
	ODA_FED_REFERENCE_PYTHON=$(CURDIR)/$(REF)/bin/python $(PY) -m pytest -q
	$(PY) scripts/audit_deps.py

## Regenerate oda_fed/proto/v1 from protos/ with the pinned generator.
proto: $(STAMP)
	$(PY) scripts/gen_protos.py

lint: $(STAMP)
	$(VENV)/bin/ruff check oda_fed tests benchmarks scripts

## Benchmarks against the references (prints ratios; see benchmarks/README.md).
bench: $(STAMP) $(REF_STAMP)
	ODA_FED_REFERENCE_PYTHON=$(CURDIR)/$(REF)/bin/python $(PY) benchmarks/encode.py
	ODA_FED_REFERENCE_PYTHON=$(CURDIR)/$(REF)/bin/python $(PY) benchmarks/kernel.py
	ODA_FED_REFERENCE_PYTHON=$(CURDIR)/$(REF)/bin/python $(PY) benchmarks/hardening.py
	$(PY) benchmarks/blocking.py --sizes 10000,100000
	ODA_FED_REFERENCE_PYTHON=$(CURDIR)/$(REF)/bin/python $(PY) benchmarks/solver.py
	ODA_FED_REFERENCE_PYTHON=$(CURDIR)/$(REF)/bin/python $(PY) benchmarks/link.py
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/disclosure.py
	$(PY) benchmarks/events.py
	ODA_FED_REFERENCE_PYTHON=$(CURDIR)/$(REF)/bin/python $(PY) benchmarks/products.py

## Linkage quality beside anonlink and Splink on data oda_fed.synth did not make (about 15 min).
quality: $(STAMP) $(REF_STAMP) $(SPLINK_STAMP)
	ODA_FED_REFERENCE_PYTHON=$(CURDIR)/$(REF)/bin/python \
	ODA_FED_SPLINK_PYTHON=$(CURDIR)/$(SPLINK)/bin/python $(PY) benchmarks/quality.py

clean:
	rm -rf $(VENV) $(REF) $(SPLINK) demo-run build *.egg-info
