"""Settings for Django's own ``tests/runtests.py``, one variant of the suite run.

`tests/frameworks/django_suite.py` writes the variant (DATABASES, where to record the
results) as JSON into ``SECUREDB_DJANGO_SUITE`` and puts this directory on the path.
``RecordingRunner`` is Django's runner that also writes every test's outcome to that
file, so two variants can be compared test by test.
"""

from __future__ import annotations

import json
import os
import unittest
from typing import Any

from django.test.runner import DiscoverRunner

_VARIANT = json.loads(os.environ["SECUREDB_DJANGO_SUITE"])

DATABASES = _VARIANT["databases"]
if any(db["ENGINE"] == "django.db.backends.mysql" for db in DATABASES.values()):
    import pymysql  # Django's stock MySQL backend on the same driver as securedb's

    pymysql.install_as_MySQLdb()

# As Django's own tests/test_sqlite.py.
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
TEST_RUNNER = "securedb_suite_settings.RecordingRunner"


class RecordingResult(unittest.TextTestResult):
    """Unittest's result, plus each test's outcome by id (a failed subtest fails it)."""

    outcomes: dict[str, str] = {}  # noqa: RUF012  (one run per process)

    def _record(self, test: Any, outcome: str) -> None:
        if self.outcomes.get(test.id()) not in ("failed", "error"):
            self.outcomes[test.id()] = outcome

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "failed")

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "error")

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skipped")

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "xfail")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "failed")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record(test, "failed" if failed else "error")


class RecordingRunner(DiscoverRunner):
    def get_resultclass(self) -> Any:
        return super().get_resultclass() or RecordingResult

    def run_suite(self, suite: Any, **kwargs: Any) -> Any:
        try:
            return super().run_suite(suite, **kwargs)
        finally:
            with open(_VARIANT["results"], "w") as out:
                json.dump(RecordingResult.outcomes, out, indent=0, sort_keys=True)
