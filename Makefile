# videobatch: every target builds the virtualenv and installs what it needs first, from nothing but
# Python 3.11+. Two stamps: the runtime (install, demo, run, plan, status, report, emulator) and,
# on top of it, the test extras (test, bench), so `make test` after `make demo` adds only those.
# The versions come from the lock files in requirements/ (see docs/install.md to regenerate them).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
VB     := $(BIN)/videobatch
RUNTIME_STAMP := $(VENV)/.runtime-stamp
TEST_STAMP    := $(VENV)/.test-stamp
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

# `make install` links videobatch into $(PREFIX)/bin: ~/.local/bin unless told otherwise.
PREFIX ?= $(HOME)/.local
BINDIR := $(PREFIX)/bin

MANIFEST ?= manifests/example.yaml
LEDGER   ?= outputs/ledger.parquet
# EMULATE=1: `make status` and `make report` read the demo's ledger (outputs/emulator/).
EMULATE  ?=
ARGS     ?=
# Two workers on two cores: three finished in 9:45 rather than 12:36, but two of three runs had a
# timing test fail under that load (issue 22); TEST_WORKERS=3 for a faster, less quiet run.
TEST_WORKERS ?= 2

.PHONY: install link uninstall demo run plan status report test bench emulator clean

$(RUNTIME_STAMP): pyproject.toml requirements/runtime.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "videobatch needs Python 3.11 or newer: run make PYTHON=python3.11 ...")'
	@echo "videobatch: installing into $(VENV): polars, aiohttp, PyAV, PyYAML, tqdm, deltalake, obstore (about 420 MB; 20-60 s the first time)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) -r requirements/runtime.txt
	@$(PIP) --no-deps -e .
	@touch $@
	@echo "videobatch: installed $$($(VB) --version | cut -d' ' -f2) in $(VENV) ($$(du -sh $(VENV) | cut -f1))"

$(TEST_STAMP): $(RUNTIME_STAMP) requirements/test.txt
	@echo "videobatch: adding the test extras to $(VENV): pytest, playwright, duckdb, pandas, pyarrow, moto (about 650 MB more; 20-60 s the first time)"
	@$(PIP) -r requirements/test.txt
	@touch $@

# One step puts `videobatch` on the PATH: a link to .venv/bin/videobatch (this checkout stays
# where it is: the link and the editable install point into it).
install: link
	@echo "videobatch: ready. Next: make demo (a batch on the built-in emulator; no key, no credits)"

link: $(RUNTIME_STAMP)
	@mkdir -p $(BINDIR)
	@if [ -e $(BINDIR)/videobatch ] && [ ! -L $(BINDIR)/videobatch ]; then \
	  echo "videobatch: $(BINDIR)/videobatch exists and is not our link; remove it, or run make install PREFIX=/another/prefix"; exit 2; fi
	@ln -sfn $(abspath $(VB)) $(BINDIR)/videobatch
	@echo "videobatch: linked $(BINDIR)/videobatch -> $(abspath $(VB))"
	@case ":$$PATH:" in *":$(BINDIR):"*) ;; *) \
	  echo "videobatch: $(BINDIR) is not on your PATH; to add it (now and in new terminals), run:"; \
	  echo "  echo 'export PATH=\"$(BINDIR):\$$PATH\"' >> ~/.profile && export PATH=\"$(BINDIR):\$$PATH\"";; esac

uninstall:
	@if [ -L $(BINDIR)/videobatch ]; then rm $(BINDIR)/videobatch && echo "videobatch: removed $(BINDIR)/videobatch"; fi

# The report is written even when the run ends early, and the run's exit code is kept.
demo: link
	$(VB) run manifests/example.yaml --emulate $(ARGS); code=$$?; \
	$(VB) report --ledger outputs/emulator/ledger.parquet; exit $$code

run: $(RUNTIME_STAMP)
	$(VB) run $(MANIFEST) --ledger $(LEDGER) $(ARGS)

plan: $(RUNTIME_STAMP)
	$(VB) plan $(MANIFEST) --ledger $(LEDGER) $(ARGS)

# Which ledger `make status` and `make report` read: EMULATE=1 the demo's; otherwise $(LEDGER), or,
# before any real run has made one, the demo's (said on the first line, never silently).
DEMO_LEDGER := outputs/emulator/ledger.parquet
READ_LEDGER = $(if $(EMULATE),--emulate,$(if $(or $(wildcard $(LEDGER)),$(if $(wildcard $(DEMO_LEDGER)),,none)),--ledger $(LEDGER),--emulate))
define SAY_DEMO_LEDGER
$(if $(filter --emulate,$(READ_LEDGER)),$(if $(EMULATE),,@echo "make $@: no ledger at $(LEDGER) yet: reading the demo's ($(DEMO_LEDGER))"))
endef

status: $(RUNTIME_STAMP)
	$(SAY_DEMO_LEDGER)
	$(VB) status $(READ_LEDGER) $(ARGS)

report: $(RUNTIME_STAMP)
	$(SAY_DEMO_LEDGER)
	$(VB) report $(READ_LEDGER) $(ARGS)

# Two workers: the fault tests run their own CLI processes and emulators, each in its own folder and ports.
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(ARGS)

# The test extras: the review page's benchmark drives Chromium through playwright.
bench: $(TEST_STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

emulator: $(RUNTIME_STAMP)
	$(VB) emulator $(ARGS)

clean:
	rm -rf $(VENV) outputs/emulator
