"""Django's own test suite, a small subset, on securedb's backends against the bed.

Every variant of `tests/frameworks/django_suite.py` (PostgreSQL with and without Django's
pool, MySQL; stock and securedb) runs Django's ``basic`` and ``transactions`` modules:
no test that passes on Django's stock backend may fail on securedb's. ``make
django-suite`` runs the larger set.
"""

from __future__ import annotations

import subprocess

import pytest

from bed.bed import Bed
from tests.frameworks import django_suite

pytest.importorskip("django")

pytestmark = [pytest.mark.bed, pytest.mark.slow]


def test_django_suite_subset(bed: Bed) -> None:
    try:
        django_suite.django_tests()  # fetched from PyPI once, then kept under .cache/
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"Django's source distribution could not be fetched: {exc}")
    runs = django_suite.run(bed, django_suite.VARIANTS, django_suite.CI_MODULES)
    for run in runs.values():
        assert run.count()["passed"] > 100, f"{run.variant.name}: see {run.log}"
        if run.variant.securedb:
            stock = runs[run.variant.stock.name]
            assert run.outcomes.keys() == stock.outcomes.keys()
            assert django_suite.regressions(stock, run) == [], f"see {run.log}"
