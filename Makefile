# The two commands of the README, and the checks CI runs.
.PHONY: setup demo test lint bed bench

VENV_PY := .venv/bin/python

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV_PY) -m examples.demo

test: setup
	$(VENV_PY) -m pytest

lint: setup
	$(VENV_PY) -m ruff check .
	$(VENV_PY) -m ruff format --check .
	$(VENV_PY) -m mypy

bed: setup
	$(VENV_PY) -m bed --hold

bench: setup
	$(VENV_PY) -m benchmarks.run
