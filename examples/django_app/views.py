"""The Django example's views: a write that returns its id, a read, and ``/stats``.

Both database views run their work through `transactionally`, which does for Django what
`securedb.run_transaction` does for an engine: after a failover-class error (the writer
is gone, or read-only now) it closes the connection, which Django's pool then discards,
waits with jittered backoff and runs the work again on a fresh connection, to the new
writer, within a deadline. A write whose COMMIT was lost is not run again: its outcome is
unknown, and the view answers 503 saying so (the client must look before sending it again).

Reads go to the writer too: this app has one database, the cluster endpoint.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import DatabaseError, connection, transaction  # type: ignore[import-untyped]
from django.http import HttpRequest, JsonResponse  # type: ignore[import-untyped]

from examples import stats as process_stats
from securedb.drivers import Failure
from securedb.errors import FailoverError, TransactionOutcomeUnknown
from securedb.failover import backoff, failure_of

logger = logging.getLogger(__name__)
T = TypeVar("T")
RETRIED = frozenset({Failure.FAILOVER, Failure.READ_ONLY})
DEADLINE = 30.0  # seconds to find the writer again before answering 503


def transactionally(work: Callable[[], T], *, idempotent: bool = False) -> T:
    """Run `work` in a transaction, and again on a fresh connection after a failover.

    Raises:
        TransactionOutcomeUnknown: the connection died during COMMIT and `idempotent` is
            False: the write may or may not have committed.
        FailoverError: no writer within `DEADLINE` seconds.
    """
    started, attempt = time.monotonic(), 0
    while True:
        attempt += 1
        committing = False
        try:
            with transaction.atomic():
                result = work()
                committing = True  # what fails from here on is the COMMIT
            return result
        except DatabaseError as exc:
            if failure_of(exc.__cause__ or exc, "postgresql") not in RETRIED:
                raise
            if committing and not idempotent:
                raise TransactionOutcomeUnknown(
                    "the connection was lost during COMMIT: the note may or may not be saved"
                ) from exc
            connection.close()  # back to the pool, which discards a broken connection
            wait = backoff(attempt)
            if time.monotonic() - started + wait > DEADLINE:
                raise FailoverError(f"no writer after {attempt} attempts") from exc
            time.sleep(wait)


def answers_json(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Errors as JSON naming their class (503 when the database is unavailable)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        try:
            return view(request, *args, **kwargs)
        except (TransactionOutcomeUnknown, FailoverError) as exc:
            logger.warning("%s %s: %s", request.method, request.path, type(exc).__name__)
            return JsonResponse({"error": type(exc).__name__}, status=503)
        except Exception as exc:
            logger.exception("%s %s failed", request.method, request.path)
            return JsonResponse({"error": type(exc).__name__}, status=500)

    return wrapped


@answers_json
def add_note(request: HttpRequest) -> JsonResponse:
    """``POST /notes?body=...``: insert a note; the answer is its id, once committed."""
    if request.method != "POST":
        return JsonResponse({"error": "use POST"}, status=405)
    body = request.GET.get("body", "")

    def insert() -> int:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO notes (body) VALUES (%s) RETURNING id", [body])
            return int(cursor.fetchone()[0])

    return JsonResponse({"id": transactionally(insert)})


@answers_json
def latest_note(request: HttpRequest) -> JsonResponse:
    """``GET /notes/latest``: the highest note id (0 when there is none)."""

    def read() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(max(id), 0) FROM notes")
            return int(cursor.fetchone()[0])

    return JsonResponse({"id": transactionally(read, idempotent=True)})


def stats(request: HttpRequest) -> JsonResponse:
    """``GET /stats``: this worker's pid and securedb's credential fetches (`examples.stats`)."""
    return JsonResponse(process_stats.snapshot())
