"""Django's own test suite on securedb's backends, compared with Django's stock backends.

Fetches the source distribution of the installed Django version from PyPI (once; it is
kept under ``.cache/``, never committed), starts a bed of its own, lets the bed's users
create test databases, and runs ``tests/runtests.py`` once per variant:

- stock PostgreSQL (psycopg, app_user with a password), with and without Django's pool;
- securedb's PostgreSQL backend (iam_user with IAM tokens), with and without the pool;
- stock MySQL (PyMySQL as MySQLdb, app_user with a password);
- securedb's MySQL backend (iam_user with IAM tokens over the cleartext plugin and TLS).

Every variant verifies the server's certificate. Each securedb variant is compared with
its stock twin test by test: a test that passes on stock and does not pass on
securedb's backend (or is skipped on stock and fails or does not run on securedb's) is a
regression, unless listed in `BY_DESIGN` with its reason; the exit status is 1 if there
is any. Run ``python -m tests.frameworks.django_suite --help`` (or ``make
django-suite``). The logs of the last runs are kept under ``.cache/django-suite/``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import django

from bed import mariadb, postgres
from bed.bed import Bed, can_start

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
SETTINGS_DIR = Path(__file__).resolve().with_name("django_runtests")
# The backends and core ORM modules; `make django-suite` runs these.
MODULES = (
    "basic",
    "transactions",
    "backends",
    "select_for_update",
    "transaction_hooks",
    "queries",
    "model_fields",
    "expressions",
    "aggregation",
    "lookup",
    "update",
    "delete",
    "get_or_create",
    "bulk_create",
    "ordering",
    "introspection",
    "schema",
    "migrations",
)
CI_MODULES = ("basic", "transactions")
PASSED = {"passed", "skipped", "xfail"}
IAM_TOKEN_TTL = 120  # short, so that a run crosses several token lifetimes


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    engine: str  # "postgresql" or "mysql"
    securedb: bool
    pool: bool = False

    @property
    def stock(self) -> Variant:
        """The stock variant this one is compared with."""
        name = self.name.replace("securedb", "stock")
        return dataclasses.replace(self, name=name, securedb=False)


VARIANTS = (
    Variant("stock-pg", "postgresql", securedb=False),
    Variant("securedb-pg", "postgresql", securedb=True),
    Variant("stock-pg-pool", "postgresql", securedb=False, pool=True),
    Variant("securedb-pg-pool", "postgresql", securedb=True, pool=True),
    Variant("stock-mysql", "mysql", securedb=False),
    Variant("securedb-mysql", "mysql", securedb=True),
)


@dataclasses.dataclass
class Run:
    variant: Variant
    outcomes: dict[str, str]
    returncode: int
    seconds: float
    log: Path

    def count(self) -> collections.Counter[str]:
        return collections.Counter(self.outcomes.values())

    def summary(self) -> str:
        c = self.count()
        return (
            f"{self.variant.name:18} ran {len(self.outcomes):5}  passed {c['passed']:5}  "
            f"failed {c['failed']:3}  errors {c['error']:3}  skipped {c['skipped']:4}  "
            f"xfail {c['xfail']:3}  ({self.seconds:.0f} s, exit {self.returncode})"
        )


# Tests that fail on securedb's backends on purpose, and why. Nothing else may.
# Tests that may fail on securedb's backends and pass on stock, each with its reason.
BY_DESIGN: dict[str, str] = {
    "backends.tests.BackendTestCase.test_unicode_password": (
        "sets PASSWORD while OPTIONS['securedb'] says auth='iam': securedb refuses the "
        "ambiguous settings instead of ignoring the password"
    ),
}


def differences(stock: Run, securedb: Run) -> list[str]:
    """Tests that pass on stock but not on securedb, or are skipped there but break here.

    A test that does not run on securedb's backend counts as broken.
    """
    return sorted(
        test
        for test, outcome in stock.outcomes.items()
        if (outcome == "passed" and securedb.outcomes.get(test) != "passed")
        or (outcome in PASSED and securedb.outcomes.get(test) not in PASSED)
    )


def regressions(stock: Run, securedb: Run) -> list[str]:
    """`differences`, less the tests that fail `BY_DESIGN`."""
    return [test for test in differences(stock, securedb) if test not in BY_DESIGN]


def django_tests(cache: Path = CACHE) -> Path:
    """Django's ``tests`` directory from the sdist of the installed version, fetched once."""
    version = django.__version__
    tests = cache / "django" / f"django-{version}" / "tests"
    if (tests / "runtests.py").exists():
        return tests
    downloads = cache / "django" / "sdist"
    sdist = downloads / f"django-{version}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                *("--no-binary", ":all:", f"django=={version}", "-d", str(downloads)),
            ],
            check=True,
        )
    (cache / "django").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache / "django"))
    try:
        with tarfile.open(sdist) as archive:
            archive.extractall(staging, filter="data")
        with contextlib.suppress(OSError):  # another run may have unpacked it meanwhile
            (staging / f"django-{version}").rename(tests.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tests


@contextlib.contextmanager
def database_rights(bed: Bed) -> Iterator[None]:
    """Let app_user and iam_user create (and drop) test databases, for this block only."""
    users = (postgres.APP_USER, postgres.IAM_USER)
    accounts = ", ".join(f"'{u}'@'%'" for u in (mariadb.APP_USER, mariadb.IAM_USER))
    bed.primary.psql("".join(f"ALTER ROLE {u} CREATEDB;" for u in users))
    bed.mariadb.sql(f"GRANT ALL PRIVILEGES ON `test\\_%`.* TO {accounts};")
    try:
        yield
    finally:
        bed.primary.psql("".join(f"ALTER ROLE {u} NOCREATEDB;" for u in users))
        bed.mariadb.sql(f"REVOKE ALL PRIVILEGES ON `test\\_%`.* FROM {accounts};")


def databases(bed: Bed, variant: Variant) -> dict[str, Any]:
    """DATABASES for `variant`: "default" and "other", on the same server."""
    ca = str(bed.pki.ca)
    if variant.engine == "postgresql":
        base: dict[str, Any] = {"HOST": "localhost", "PORT": bed.primary.port, "NAME": "app"}
        if variant.securedb:
            base |= {"ENGINE": "securedb.contrib.django.postgresql", "USER": postgres.IAM_USER}
            options: dict[str, Any] = {
                "securedb": {"auth": "iam", "ca_bundle": ca, "iam_token_ttl": IAM_TOKEN_TTL}
            }
        else:
            base |= {
                "ENGINE": "django.db.backends.postgresql",
                "USER": postgres.APP_USER,
                "PASSWORD": postgres.APP_PASSWORD,
            }
            options = {"sslmode": "verify-full", "sslrootcert": ca}
        if variant.pool:
            options["pool"] = True
    else:
        base = {"HOST": "localhost", "PORT": bed.mariadb.port, "NAME": "app"}
        if variant.securedb:
            base |= {"ENGINE": "securedb.contrib.django.mysql", "USER": mariadb.IAM_USER}
            options = {"securedb": {"auth": "iam", "ca_bundle": ca, "iam_token_ttl": IAM_TOKEN_TTL}}
        else:
            base |= {
                "ENGINE": "django.db.backends.mysql",
                "USER": mariadb.APP_USER,
                "PASSWORD": mariadb.APP_PASSWORD,
            }
            options = {"ssl": {"ca": ca}}
    prefix = variant.name.replace("-", "_")
    test: dict[str, Any] = {"CHARSET": "utf8mb4"} if variant.engine == "mysql" else {}
    return {
        alias: {**base, "OPTIONS": options, "TEST": {**test, "NAME": f"test_{prefix}_{alias}"}}
        for alias in ("default", "other")
    }


def run_variant(
    bed: Bed, tests: Path, variant: Variant, modules: Sequence[str], parallel: int = 1
) -> Run:
    """Run Django's runtests.py for `modules` on `variant`; its log goes under .cache/."""
    logs = log_dir(bed)
    log, results = logs / f"{variant.name}.log", logs / f"{variant.name}.json"
    results.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SECUREDB_"))}
    env |= bed.aws_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SETTINGS_DIR), env.get("PYTHONPATH")]))
    env["SECUREDB_DJANGO_SUITE"] = json.dumps(
        {"databases": databases(bed, variant), "results": str(results)}
    )
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run(
            [
                *(sys.executable, str(tests / "runtests.py"), "--settings=securedb_suite_settings"),
                *("--noinput", f"--parallel={parallel}", *modules),
            ],
            cwd=tests,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    outcomes = json.loads(results.read_text()) if results.exists() else {}
    return Run(variant, outcomes, proc.returncode, time.monotonic() - started, log)


def log_dir(bed: Bed, keep: int = 5) -> Path:
    """This bed's directory of logs and results; only the `keep` newest are kept."""
    runs = CACHE / "django-suite"
    logs = runs / bed.run_id
    if not logs.exists():
        logs.mkdir(parents=True)
        done = [p for p in runs.iterdir() if p.is_dir()]
        older = sorted(done, key=lambda p: p.stat().st_mtime, reverse=True)[keep:]
        for old in older:
            shutil.rmtree(old, ignore_errors=True)
    return logs


def run(
    bed: Bed, variants: Iterable[Variant], modules: Sequence[str], parallel: int = 1
) -> dict[str, Run]:
    """Every variant in turn, with the rights to create test databases."""
    tests = django_tests()
    with database_rights(bed):
        return {v.name: run_variant(bed, tests, v, modules, parallel) for v in variants}


def report(runs: dict[str, Run]) -> int:
    """Print counts per variant and each securedb variant's regressions; their number."""
    for result in runs.values():
        print(result.summary())
    total = 0
    for result in runs.values():
        stock = runs.get(result.variant.stock.name)
        if not result.variant.securedb or stock is None:
            continue
        lost = differences(stock, result)
        unexpected = [test for test in lost if test not in BY_DESIGN]
        total += len(unexpected)
        print(
            f"{result.variant.name}: {len(unexpected)} tests pass on {stock.variant.name} "
            f"only, {len(lost) - len(unexpected)} more by design"
        )
        for test in lost:
            why = f" (by design: {BY_DESIGN[test]})" if test in BY_DESIGN else ""
            print(f"  {test}: {result.outcomes.get(test, 'not run')}{why}")
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=MODULES, help="Django test modules")
    parser.add_argument(
        "--variant",
        action="append",
        choices=[v.name for v in VARIANTS],
        help="run only these variants (repeatable; default: all)",
    )
    parser.add_argument("--ci", action="store_true", help=f"only {' '.join(CI_MODULES)}")
    parser.add_argument("--parallel", type=int, default=1, help="runtests.py --parallel")
    args = parser.parse_args(argv)
    reason = can_start()
    if reason:
        print(f"django-suite: the bed cannot start here: {reason}", file=sys.stderr)
        return 2
    chosen = [v for v in VARIANTS if not args.variant or v.name in args.variant]
    modules = CI_MODULES if args.ci else args.modules
    print(f"Django {django.__version__}: {' '.join(modules)}")
    with Bed() as bed:
        runs = run(bed, chosen, modules, args.parallel)
    return 1 if report(runs) else 0


if __name__ == "__main__":
    sys.exit(main())
