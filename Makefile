# The two commands of the README; each runs the (idempotent) set-up first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test
setup:
	MOKD_VENV=$(VENV) bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest tests
