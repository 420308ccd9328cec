# The two commands of the README, and the checks CI runs.
.PHONY: setup demo test test-clock lint docs bed bench soak django-suite mutate

VENV_PY := .venv/bin/python

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV_PY) -m examples.demo

test: setup
	$(VENV_PY) -m pytest

# The whole suite with every process's wall clock moved by SHIFT (libfaketime: +400d, +3y).
SHIFT ?= +400d
test-clock: setup
	bash scripts/clock.sh $(SHIFT)

lint: setup
	$(VENV_PY) -m ruff check .
	$(VENV_PY) -m ruff format --check .
	$(VENV_PY) -m mypy

# The documentation site, in strict mode: a broken link or reference fails (into .cache/site).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV_PY) -m mkdocs build --strict --quiet

bed: setup
	$(VENV_PY) -m bed --hold

bench: setup
	$(VENV_PY) -m benchmarks.run

# The fleet soak: both example apps under gunicorn and uvicorn through rotation, expiry,
# a partition, a writer flip and a killed worker (10 minutes; DURATION=seconds).
soak: setup
	$(VENV_PY) -m benchmarks.soak $(if $(DURATION),--duration $(DURATION))

# Mutation testing of the security core on one held bed; not part of CI (about two hours).
# MUTANTS='securedb.tls.*' limits it; results stay in mutants/ and a rerun tests only changes.
mutate: setup
	$(VENV_PY) scripts/mutate.py $(MUTANTS)

# Django's own test suite on securedb's backends and on Django's stock ones (a bed of its own).
django-suite: setup
	$(VENV_PY) -m tests.frameworks.django_suite
