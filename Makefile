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
	scripts/with-libvirt-hosts.sh $(BIN)/pytest -q

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

## explore: the long Hypothesis run of the verification kit (make test runs the CI profile),
## then the model check of 3 instances on 3 hosts, its figures written to docs/verification.md
.PHONY: explore
explore: $(STAMP)
	COLDMIG_HYPOTHESIS_PROFILE=coldmig-explore $(BIN)/pytest -q tests/testing/test_stateful.py
	$(BIN)/python -m benchmarks.explore_model_check --output docs/verification.md

## mutants: mutation score of the roles and the machine (cosmic-ray; not part of `make test`)
.PHONY: mutants
mutants: $(STAMP)
	@$(BIN)/python -c 'import cosmic_ray' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[test,mutation]'
	scripts/mutants.sh

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

# --- libvirt driver (issue 6): real QEMU/TCG hosts for the tests, demo and benchmark ---
.PHONY: libvirt-hosts libvirt-hosts-deps libvirt-hosts-stop demo-libvirt bench-libvirt
# The unit tests include the driver's tests on real hosts: `unit` runs pytest through
# scripts/with-libvirt-hosts.sh, which starts two fresh hosts first and stops them (by pid,
# their state removed) when pytest ends, passed or failed; KEEP_HOSTS=1 keeps them.
unit: libvirt-hosts-deps

## libvirt-hosts-deps: as root, install libvirt/QEMU when missing; build libvirt-python into .venv
libvirt-hosts-deps: $(STAMP)
	@if [ "$$(id -u)" = 0 ]; then scripts/libvirt-hosts.sh install; \
	elif [ "$$CI" = "true" ]; then echo "libvirt-hosts: CI must run as root" >&2; exit 1; \
	else echo "libvirt-hosts: not root, no real hosts here (their tests skip)"; fi
	@$(BIN)/python -c 'import libvirt' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[test,libvirt]' \
		|| [ "$$CI" != "true" ]

## libvirt-hosts: start two local libvirtd hosts that stay up until `make libvirt-hosts-stop`
libvirt-hosts: libvirt-hosts-deps
	@if [ "$$(id -u)" = 0 ]; then scripts/libvirt-hosts.sh start 2; fi

libvirt-hosts-stop:
	scripts/libvirt-hosts.sh stop

## demo-libvirt: the demo on two local QEMU hosts (started for it, stopped after it)
demo-libvirt: libvirt-hosts-deps
	scripts/with-libvirt-hosts.sh sh -c '$(BIN)/coldmig demo --driver libvirt --hosts-env "$$COLDMIG_LIBVIRT_ENV"'

bench-libvirt: libvirt-hosts-deps
	scripts/with-libvirt-hosts.sh $(BIN)/python -m benchmarks.bench_libvirt --output docs/benchmarks-libvirt.md
