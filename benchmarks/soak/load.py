"""The load: a steady number of clients per app, each sending one request after another.

Half the requests are writes (``POST``, a unique body; the answer is the new row's id)
and half are reads. Each request is recorded with when it started and ended, which app,
its outcome and, for an acknowledged write, the id and body, so that the runner can
find every one of them on the final writer. Nothing is retried here: a failure reaches
the record as the client saw it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import random
import threading
import time

import httpx

TIMEOUT = 60.0  # per request; a read may wait out the partition's connect timeouts


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    app: str
    op: str  # "write" or "read"
    start: float  # seconds since the load's t0 (time.monotonic based)
    end: float
    outcome: str  # "ok", "http 503 TransactionOutcomeUnknown", "ReadError" ...
    note_id: int | None = None
    body: str | None = None


@dataclasses.dataclass(frozen=True)
class Target:
    app: str
    url: str
    write: str  # the path of the write endpoint
    read: str


class Load:
    """`clients` tasks per target in an event loop of its own thread, until `stop`."""

    def __init__(self, targets: list[Target], clients: int, t0: float) -> None:
        self.targets, self.clients, self.t0 = targets, clients, t0
        self.records: list[Request] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._numbers = itertools.count()

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> list[Request]:
        self._stop.set()
        self._thread.join(TIMEOUT + 10)
        assert not self._thread.is_alive(), "the load did not stop"
        return self.records

    async def _main(self) -> None:
        # A connection per request, as from many users: each is accepted by whichever
        # worker is free (with keep-alive, uvicorn's first worker would take them all).
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=0)
        async with contextlib.AsyncExitStack() as stack:
            clients = {
                t.app: await stack.enter_async_context(
                    httpx.AsyncClient(base_url=t.url, limits=limits, timeout=TIMEOUT)
                )
                for t in self.targets
            }
            tasks = [
                self._client(target, clients[target.app], n)
                for target in self.targets
                for n in range(self.clients)
            ]
            await asyncio.gather(*tasks)

    async def _client(self, target: Target, http: httpx.AsyncClient, n: int) -> None:
        rng = random.Random(f"{target.app}-{n}")
        while not self._stop.is_set():
            if rng.random() < 0.5:
                body = f"{target.app}-{n}-{next(self._numbers)}"
                self.records.append(await self._send(http, target, "write", body))
            else:
                self.records.append(await self._send(http, target, "read", None))

    async def _send(
        self, http: httpx.AsyncClient, target: Target, op: str, body: str | None
    ) -> Request:
        start = time.monotonic() - self.t0
        note_id = None
        try:
            if op == "write":
                answer = await http.post(target.write, params={"body": body})
            else:
                answer = await http.get(target.read)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        else:
            if answer.status_code == 200:
                outcome = "ok"
                value = answer.json()
                note_id = int(value["id"] if isinstance(value, dict) else value)
            else:
                outcome = f"http {answer.status_code} {error_name(answer)}"
        end = time.monotonic() - self.t0
        acked = op == "write" and outcome == "ok"
        return Request(
            target.app, op, start, end, outcome, note_id if acked else None, body if acked else None
        )


def error_name(answer: httpx.Response) -> str:
    """The error class an app named in its JSON answer, else the answer's first words."""
    try:
        value = answer.json()
    except ValueError:
        return answer.text[:40]
    if isinstance(value, dict):
        return str(value.get("error") or value.get("detail") or value)[:60]
    return str(value)[:60]
