# videobatch: every target builds the virtualenv and installs the project first when needed,
# from nothing but Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
VB     := $(BIN)/videobatch

MANIFEST ?= manifests/example.yaml
LEDGER   ?= outputs/ledger.parquet
ARGS     ?=
TEST_WORKERS ?= 2

.PHONY: install demo run plan status report test bench emulator clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "videobatch needs Python 3.11 or newer: run make PYTHON=python3.11 ...")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The report is written even when the run ends early, and the run's exit code is kept.
demo: $(STAMP)
	$(VB) run manifests/example.yaml --emulate $(ARGS); code=$$?; \
	$(VB) report --ledger outputs/emulator/ledger.parquet; exit $$code

run: $(STAMP)
	$(VB) run $(MANIFEST) --ledger $(LEDGER) $(ARGS)

plan: $(STAMP)
	$(VB) plan $(MANIFEST) --ledger $(LEDGER) $(ARGS)

status: $(STAMP)
	$(VB) status --ledger $(LEDGER) $(ARGS)

report: $(STAMP)
	$(VB) report --ledger $(LEDGER) $(ARGS)

# Two workers: the fault tests run their own CLI processes and emulators, each in its own folder and ports.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

emulator: $(STAMP)
	$(VB) emulator $(ARGS)

clean:
	rm -rf $(VENV) outputs/emulator
