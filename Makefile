# The two commands of the README; each runs the (idempotent) set-up first.
# STACK=onedl (make test STACK=onedl) uses the OneDL forks, in .venv-onedl.
STACK ?= openmmlab
VENV ?= $(if $(filter onedl,$(STACK)),.venv-onedl,.venv)
PY := $(VENV)/bin/python

.PHONY: setup demo test
setup:
	MOKD_STACK=$(STACK) MOKD_VENV=$(VENV) bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest tests
