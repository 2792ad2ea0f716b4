# Two commands matter: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

NOVA_VENV := .nova-venv

.PHONY: demo test lint typecheck unit bench docs clean conformance conformance-env conformance-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## demo: install into .venv and run the demo on the embedded default (fake driver, SQLite file)
demo: $(STAMP)
	$(BIN)/coldmig demo --db coldmig-demo.sqlite

## test: install everything the tests need, then lint, type check and run every test
test: $(STAMP) lint typecheck unit conformance-check

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

## conformance-env: a separate virtualenv with Nova 34.0.0 and its functional-test harness
conformance-env:
	conformance/make-env.sh $(NOVA_VENV)

## conformance: every scenario of tests/scenarios through Nova and through coldmig_fsm, diffed
conformance: $(STAMP) conformance-env
	$(BIN)/coldmig conformance --nova-python $(NOVA_VENV)/bin/python tests/scenarios/*.yaml

# In CI the Nova environment is always created, so the check always runs there.
conformance-check: $(STAMP)
	@if [ "$$CI" = "true" ] || [ -x $(NOVA_VENV)/bin/python ]; then \
		$(MAKE) --no-print-directory conformance; \
	else \
		echo "conformance: no Nova environment here (make conformance-env creates it)"; \
	fi

## bench: run the benchmarks and write docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --output docs/benchmarks.md

## docs: regenerate the generated documents from the machine
docs: $(STAMP)
	$(BIN)/coldmig states --markdown > docs/states.md
	$(BIN)/coldmig graph > docs/states.mmd
	$(BIN)/coldmig failures --markdown > docs/failures.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis coldmig-demo.sqlite*

