# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv proto lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Run a whole federation on localhost: coordinator + 3 nodes over mutual TLS.
demo: $(STAMP)
	$(VENV)/bin/oda-fed demo --workdir demo-run

## Install what is needed and run the whole test suite.
test: $(STAMP)
	$(PY) -m pytest -q

## Regenerate oda_fed/proto/v1 from protos/ with the pinned generator.
proto: $(STAMP)
	$(PY) scripts/gen_protos.py

lint: $(STAMP)
	$(VENV)/bin/ruff check oda_fed tests benchmarks scripts

clean:
	rm -rf $(VENV) demo-run build *.egg-info
