"""The Bed: start every part in parallel, describe how to reach it, stop it by pid."""

from __future__ import annotations

import atexit
import concurrent.futures
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from bed import certs, mariadb, pam, procs
from bed.forwarder import Forwarder
from bed.mariadb import MariaDB
from bed.moto import ACCESS_KEY_ID, SECRET_ACCESS_KEY, Moto
from bed.pgbouncer import PgBouncer
from bed.postgres import Postgres

if TYPE_CHECKING:
    from bed.aurora import AuroraCluster
    from bed.names import Hosts

RDS_PG_PORT, RDS_MYSQL_PORT = 5432, 3306
VERIFIER_SOURCE = Path(__file__).with_name("verifier.py")


class Bed:
    """All of the bed's servers. `start()` brings them up; `stop()` leaves nothing behind."""

    def __init__(self) -> None:
        self.run_id = secrets.token_hex(4)
        self.root = Path(tempfile.mkdtemp(prefix=f"securedb-bed-{self.run_id}-"))
        self.root.chmod(0o755)
        self.pg_service = f"securedb-{self.run_id}-pg"
        self.mysql_service = f"securedb-{self.run_id}-mysql"
        self.pki = certs.make_pki(self.root / "pki")
        self.verifier_conf = self.root / "verifier.json"
        self.verifier_log = self.root / "verifier.log"
        self.primary = Postgres(self.root, "pg1", self.pki.postgres, self.pki.ca, self.pg_service)
        self.replica = Postgres(
            self.root, "pg2", self.pki.postgres, self.pki.ca, self.pg_service, primary=self.primary
        )
        self.mariadb = MariaDB(self.root, self.pki.mysql, self.pki.ca, self.mysql_service)
        self.proxy_password = PgBouncer(
            self.root, "proxy-password", "scram", self.pki.proxy, self.pki.ca
        )
        self.proxy_iam = PgBouncer(self.root, "proxy-iam", "pam", self.pki.proxy, self.pki.ca)
        self.moto = Moto(self.root)
        self.aurora_cluster: AuroraCluster | None = None
        self.forwarders: list[Forwarder] = []
        self.pam_files: list[Path] = []
        self.partitioned: list[int] = []
        self.start_seconds = 0.0

    def start(self) -> Bed:
        started = time.monotonic()
        atexit.register(self.stop)
        try:
            self._install_verifier()
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                self.moto.start()
                self._all(pool, self._start_primary, self._start_mariadb)
                self._all(
                    pool,
                    self._start_replica,
                    *(
                        _bouncer_starter(b, self.primary.port)
                        for b in (self.proxy_password, self.proxy_iam)
                    ),
                    self.moto.wait_ready,
                )
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    @staticmethod
    def _all(pool: concurrent.futures.Executor, *steps: Callable[[], None]) -> None:
        for future in [pool.submit(step) for step in steps]:
            future.result()

    def _start_primary(self) -> None:
        self.primary.create()
        self.primary.start()
        self.primary.wait_ready()
        self.primary.setup_roles()

    def _start_replica(self) -> None:
        self.replica.create()
        self.replica.start()
        self.replica.wait_ready()

    def _start_mariadb(self) -> None:
        self.mariadb.create()
        self.mariadb.start()
        self.mariadb.wait_ready()
        self.mariadb.setup_users()

    def _install_verifier(self) -> None:
        verifier = self.root / "verifier.py"
        shutil.copyfile(VERIFIER_SOURCE, verifier)
        verifier.chmod(0o644)
        self.verifier_log.touch(mode=0o666)
        self.verifier_log.chmod(0o666)  # written by the postgres and mysql server processes
        self._write_verifier_conf(self._endpoint_groups())
        for service, group in ((self.pg_service, "pg"), (self.mysql_service, "mysql")):
            self.pam_files.append(
                pam.install(service, self.run_id, verifier, self.verifier_conf, group)
            )
        pam.join_shared(self.run_id, verifier, self.verifier_conf)

    def _endpoint_groups(self) -> dict[str, list[str]]:
        """Which host:port each server accepts tokens for: loopback names, and RDS names."""

        def loopback(*ports: int) -> list[str]:
            return [f"{host}:{port}" for port in ports for host in ("localhost", "127.0.0.1")]

        return {
            "pg": loopback(self.primary.port, self.replica.port)
            + [
                f"{name}:{RDS_PG_PORT}"
                for name in (certs.PG_INSTANCE, certs.PG_CLUSTER, certs.PG_READER)
            ],
            "mysql": [*loopback(self.mariadb.port), f"{certs.MYSQL_INSTANCE}:{RDS_MYSQL_PORT}"],
            "proxy": [*loopback(self.proxy_iam.port), f"{certs.PROXY}:{RDS_PG_PORT}"],
        }

    def _write_verifier_conf(self, groups: dict[str, list[str]]) -> None:
        conf = {
            "access_keys": {ACCESS_KEY_ID: SECRET_ACCESS_KEY},
            "groups": groups,
            "max_expires": 900,
        }
        tmp = self.verifier_conf.with_suffix(".tmp")
        tmp.write_text(json.dumps(conf, indent=1))
        tmp.chmod(0o644)
        tmp.replace(self.verifier_conf)

    def allow_endpoint(self, group: str, endpoint: str) -> None:
        """Let servers of `group` ("pg", "mysql", "proxy") accept tokens for `endpoint`."""
        groups = json.loads(self.verifier_conf.read_text())["groups"]
        groups[group].append(endpoint)
        self._write_verifier_conf(groups)

    def aurora(self, hosts: Hosts) -> AuroraCluster:
        """The emulated Aurora cluster (bed/aurora.py), its names in `hosts`.

        Started on first use, not by `start()`, so that only its tests pay for it; it
        stops with the bed.
        """
        if self.aurora_cluster is None:
            from bed.aurora import AuroraCluster  # psycopg: imported by those tests only

            cluster = AuroraCluster(self.root / "aurora", self.pki, self.pg_service, hosts)
            for name in cluster.endpoints:
                self.allow_endpoint("pg", f"{name}:{cluster.port}")
            self.aurora_cluster = cluster.start()
        return self.aurora_cluster

    def forwarder(self, target: tuple[str, int]) -> Forwarder:
        """A started TCP forwarder to `target`, stopped with the bed."""
        fwd = Forwarder(target).start()
        self.forwarders.append(fwd)
        return fwd

    def partition(self, port: int) -> None:
        """Drop, without refusing, every packet to and from a loopback port: a partition.

        Unlike the forwarder's black hole, nothing acknowledges the client's packets, so
        only TCP timeouts and keepalives can tell that the peer is gone.
        """
        for rule in _partition_rules(port):
            procs.run_as("root", ["iptables", "-I", *rule])
        self.partitioned.append(port)

    def heal(self, port: int) -> None:
        for rule in _partition_rules(port):
            procs.run_as("root", ["iptables", "-D", *rule])
        self.partitioned.remove(port)

    def aws_env(self) -> dict[str, str]:
        """Environment variables that point boto3 and botocore at moto with the test key."""
        return {
            "AWS_ENDPOINT_URL": self.moto.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": certs.REGION,
            "AWS_REGION": certs.REGION,
        }

    def rebuild_pair(self) -> None:
        """Bring back the original primary/replica pair after a failover scenario."""
        self.replica.stop("immediate")
        self.primary.stop("fast")
        self.primary.start()
        self.primary.wait_ready()
        self.primary.set_synchronous(None)
        self.replica.create()
        self.replica.start()
        self.replica.wait_ready()

    def stop(self) -> None:
        """Stop every server by pid, remove the PAM files and the run directory."""
        for port in list(self.partitioned):
            self.heal(port)
        for fwd in self.forwarders:
            fwd.stop()
        if self.aurora_cluster is not None:
            self.aurora_cluster.stop()
        for part in (self.proxy_password, self.proxy_iam, self.mariadb, self.moto):
            part.stop()
        self.replica.stop("immediate")
        self.primary.stop("fast")
        for path in self.pam_files:
            pam.remove(path, self.run_id)
        pam.leave_shared(self.run_id)
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> Bed:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def describe(self) -> str:
        """How to reach each part, for people and for the demo."""
        ca = self.pki.ca
        pg = f"host=localhost port={{}} dbname=app sslmode=verify-full sslrootcert={ca}"
        return "\n".join(
            [
                f"bed {self.run_id} up in {self.start_seconds:.1f} s, files in {self.root}",
                f"  CA (trusted by clients):  {ca}",
                f"  PostgreSQL primary:       {pg.format(self.primary.port)} "
                "user=app_user (password) | iam_user (IAM token)",
                f"  PostgreSQL replica:       {pg.format(self.replica.port)}",
                f"  MariaDB:                  127.0.0.1:{self.mariadb.port} database app, "
                "user app_user (password) | iam_user (IAM token, cleartext plugin over TLS)",
                f"  PgBouncer, password:      {pg.format(self.proxy_password.port)} user=app_user",
                f"  PgBouncer, IAM:           {pg.format(self.proxy_iam.port)} user=iam_user",
                f"  moto (AWS APIs):          AWS_ENDPOINT_URL={self.moto.url}",
                f"  RDS-style names in the certificates: {certs.PG_INSTANCE}, {certs.PG_CLUSTER}, "
                f"{certs.MYSQL_INSTANCE}, {certs.PROXY}",
            ]
        )


def _partition_rules(port: int) -> list[list[str]]:
    return [
        ["INPUT", "-i", "lo", "-p", "tcp", direction, str(port), "-j", "DROP"]
        for direction in ("--dport", "--sport")
    ]


def _bouncer_starter(bouncer: PgBouncer, backend_port: int) -> Callable[[], None]:
    def start() -> None:
        bouncer.start(backend_port)
        bouncer.wait_ready()

    return start


def can_start() -> str | None:
    """None if this machine can run the bed, else the reason it cannot."""
    if os.geteuid() != 0:
        return "the bed needs root (servers run as the postgres and mysql OS users)"
    for name in ("postgres", "mariadbd", "pgbouncer", "iptables"):
        try:
            procs.binary(name, "/usr/lib/postgresql/15/bin", "/usr/sbin")
        except procs.BedError as exc:
            return str(exc)
    if pam.pam_python() is None:
        return "pam_python.so not found; run scripts/setup.sh as root (libpam-python)"
    return mariadb.missing_tool()
