"""After failover, a new connection resolves the endpoint's name again.

The endpoint is an RDS name from the bed's certificates, so verify-full still holds. The
client runs in a child process with a mount namespace of its own, where a file of this
test is bind-mounted over ``/etc/hosts``: the test flips the name's address by rewriting
that file, and the machine's own ``/etc/hosts`` is never touched (the namespace goes with
the child, however it ends). Two forwarders listen on the two addresses, on one port,
and count the connections each receives.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bed import certs, mariadb, names, postgres
from bed.bed import Bed
from bed.forwarder import Forwarder

pytestmark = pytest.mark.bed

ROOT = Path(__file__).resolve().parents[1]
OLD, NEW = "127.0.0.2", "127.0.0.3"  # loopback addresses: the old writer's, the new one's
ANSWER = 30.0  # seconds for the child to answer a command

# The child: mount the test's hosts file, then run one unit of work per line of input.
CLIENT = """
import json, subprocess, sys
hosts, url, ca = sys.argv[1:4]
subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)
import sqlalchemy as sa
import securedb
engine = securedb.engine(url, ca_bundle=ca, pool_size=1)
for _ in sys.stdin:
    retries = []
    try:
        securedb.run_transaction(
            engine,
            lambda conn: conn.execute(sa.text("SELECT 1")).scalar(),
            attempts=4,
            deadline=10,
            on_retry=lambda details: retries.append(details.failure),
        )
        answer = {"ok": True, "retries": retries}
    except Exception as exc:
        answer = {"ok": False, "error": type(exc).__name__, "retries": retries}
    print(json.dumps(answer), flush=True)
engine.dispose()
"""


class Client:
    """The child process, asked to run a unit of work and answering in JSON."""

    def __init__(self, hosts: Path, url: str, ca: Path) -> None:
        self.proc = subprocess.Popen(
            [
                *("unshare", "--mount", "--propagation", "private", "--"),
                *(sys.executable, "-c", CLIENT, str(hosts), url, str(ca)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def run(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], ANSWER)
        assert ready, f"the client did not answer within {ANSWER:.0f} s"
        line = self.proc.stdout.readline()
        assert line, f"the client ended (exit status {self.proc.poll()})"
        return dict(json.loads(line))

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()  # the child's loop ends
        try:
            self.proc.wait(ANSWER)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def forwarders(target: tuple[str, int]) -> tuple[Forwarder, Forwarder]:
    """Two started forwarders to `target`, on OLD and NEW, listening on the same port."""
    for _ in range(5):
        old = Forwarder(target, host=OLD).start()
        try:
            return old, Forwarder(target, host=NEW, port=old.port).start()
        except OSError:  # that port is taken on NEW: try another
            old.stop()
    raise AssertionError("no port free on both loopback addresses")


@pytest.fixture(params=["postgresql", "mysql"])
def endpoint(
    request: pytest.FixtureRequest, bed: Bed
) -> Iterator[tuple[str, Forwarder, Forwarder]]:
    """An RDS endpoint name, and the forwarders at its old and its new address."""
    reason = names.can_enter()
    if reason:
        pytest.skip(reason)
    if request.param == "postgresql":
        name, port, user = certs.PG_CLUSTER, bed.primary.port, postgres.APP_USER
        password = postgres.APP_PASSWORD
    else:
        name, port, user = certs.MYSQL_INSTANCE, bed.mariadb.port, mariadb.APP_USER
        password = mariadb.APP_PASSWORD
    old, new = forwarders(("127.0.0.1", port))
    try:
        yield f"{request.param}://{user}:{password}@{name}:{old.port}/app", old, new
    finally:
        old.stop()
        new.stop()


def point(hosts: Path, name: str, address: str) -> None:
    """The name's address, as the child's resolver will read it (same file, same inode)."""
    hosts.write_text(f"127.0.0.1 localhost\n{address} {name}\n")


def test_new_connection_after_failover_resolves_again(
    bed: Bed, endpoint: tuple[str, Forwarder, Forwarder], tmp_path: Path
) -> None:
    url, old, new = endpoint
    name = url.split("@")[1].split(":")[0]
    hosts = tmp_path / "hosts"
    point(hosts, name, OLD)
    client = Client(hosts, url, bed.pki.ca)
    try:
        assert client.run() == {"ok": True, "retries": []}
        assert (old.accepted, new.accepted) == (1, 0)

        # Failover: the name now gives the new address; the old one is gone.
        point(hosts, name, NEW)
        old.drop()
        old.refuse()
        answer = client.run()
    finally:
        client.close()
    assert answer["ok"], answer
    assert new.accepted == 1  # the new connection looked the name up again
    assert old.accepted == 1
