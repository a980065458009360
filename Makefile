# Two commands for a fresh machine (see README):
#   make run    set up .venv and run the main job on the embedded sample smear
#   make test   set up .venv (+ Debian packages for Qt/Xvfb) and run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
XVFB := xvfb-run -a -s "-screen 0 1280x1024x24"

.PHONY: setup run test lint system-deps bench

setup: $(STAMP)

# PIP_FIND_LINKS is cleared so pip takes the registry's torch, whose torchvision matches.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	PIP_FIND_LINKS= $(PY) -m pip install -q --upgrade pip
	PIP_FIND_LINKS= $(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

system-deps:
	bash scripts/install_system_deps.sh

run: $(STAMP)
	bash scripts/run_main.sh $(ARGS)

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check src training tests benchmarks docs
	$(VENV)/bin/lint-imports
	QT_API=pyqt6 $(XVFB) $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src training tests benchmarks docs
	$(VENV)/bin/lint-imports
