"""The demo: securedb against the local RDS-like bed, as an application would use it.

Two engines, written exactly as against real RDS, only with the bed's CA and a tunnel:
PostgreSQL with IAM tokens, MySQL with an RDS-managed Secrets Manager secret. A small
load runs on both while the MySQL password is rotated the way AWS rotates it; the demo
prints what happened.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter

import boto3
import sqlalchemy as sa

import securedb
from bed import certs, mariadb
from bed.bed import Bed, can_start

LOAD_SECONDS = 6.0


def main() -> int:
    reason = can_start()
    if reason:
        print(f"demo: the bed cannot start here: {reason}")
        return 1
    with Bed() as bed:
        print(
            f"bed up in {bed.start_seconds:.1f} s (PostgreSQL primary + replica, MariaDB, "
            "PgBouncer, moto, token verifier)"
        )
        os.environ.update(bed.aws_env())
        pg_tunnel = bed.forwarder(("127.0.0.1", bed.primary.port))
        my_tunnel = bed.forwarder(("127.0.0.1", bed.mariadb.port))
        boto3.client("secretsmanager").create_secret(
            Name="rds/app-mysql",
            SecretString=json.dumps(
                {
                    "engine": "mysql",
                    "host": certs.MYSQL_INSTANCE,
                    "port": 3306,
                    "dbname": "app",
                    "username": mariadb.APP_USER,
                    "password": mariadb.APP_PASSWORD,
                }
            ),
        )

        # What an application writes (plus the bed's CA and the tunnel to the bed).
        pg = securedb.engine(
            f"postgresql://iam_user@{certs.PG_INSTANCE}:5432/app",
            auth="iam",
            iam_token_ttl=5,
            ca_bundle=str(bed.pki.ca),
            tunnel=f"127.0.0.1:{pg_tunnel.port}",
            pool_recycle=1,
        )
        my = securedb.engine(
            secret_id="rds/app-mysql",
            ca_bundle=str(bed.pki.ca),
            tunnel=f"127.0.0.1:{my_tunnel.port}",
            pool_recycle=1,
        )
        pg_sql = "SELECT current_user, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        print(f"PostgreSQL, IAM:  {describe(pg, pg_sql)}")
        my_sql = (
            "SELECT CURRENT_USER(), VARIABLE_VALUE FROM information_schema.SESSION_STATUS "
            "WHERE VARIABLE_NAME = 'SSL_VERSION'"
        )
        print(f"MySQL, secret:    {describe(my, my_sql)}")
        counts = run_load(bed, pg, my)
        for key, value in sorted(counts.items()):
            print(f"  {key}: {value}")
        pg.dispose()
        my.dispose()
        failed = counts["postgresql failures"] + counts["mysql failures"]
        print("demo: " + ("every request succeeded" if not failed else f"{failed} failures"))
        return 1 if failed else 0


def describe(engine: sa.Engine, sql: str) -> str:
    with engine.connect() as conn:
        row = conn.execute(sa.text(sql)).one()
    return f"{engine.url.drivername} as {row[0]}, TLS {row[1]}"


def run_load(bed: Bed, pg: sa.Engine, my: sa.Engine) -> Counter[str]:
    counts: Counter[str] = Counter()
    tokens: set[str] = set()
    stop, lock = threading.Event(), threading.Lock()
    refetches = RefetchCounter()
    logging.getLogger("securedb").addHandler(refetches)
    logging.getLogger("securedb").setLevel(logging.INFO)

    def count(key: str) -> None:
        with lock:
            counts[key] += 1

    def worker(name: str, engine: sa.Engine) -> None:
        while not stop.is_set():
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                    if name == "postgresql":
                        tokens.add(conn.connection.driver_connection.info.password[-16:])
                count(f"{name} requests")
            except Exception as exc:
                count(f"{name} failures")
                print(f"  {name} failed: {type(exc).__name__}")
            time.sleep(0.02)

    threads = [
        threading.Thread(target=worker, args=(name, engine))
        for name, engine in (("postgresql", pg), ("mysql", my))
        for _ in range(4)
    ]
    print(
        f"load: 8 threads for {LOAD_SECONDS:.0f} s; IAM tokens live 5 s; the MySQL "
        "password rotates in the middle"
    )
    for t in threads:
        t.start()
    time.sleep(LOAD_SECONDS / 3)
    rotate_mysql(bed)
    time.sleep(LOAD_SECONDS * 2 / 3)
    stop.set()
    for t in threads:
        t.join()
    logging.getLogger("securedb").removeHandler(refetches)
    counts["distinct IAM tokens used"] = len(tokens)
    counts["credentials refused, fetched again and retried"] = refetches.count
    return counts


class RefetchCounter(logging.Handler):
    """Counts securedb's "refused ... refreshing once" events (a rotation in flight)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "securedb.connect" and "refreshing once" in record.getMessage():
            self.count += 1


def rotate_mysql(bed: Bed) -> None:
    """AWS's rotation steps: stage AWSPENDING, change the password, promote AWSCURRENT."""
    sm = boto3.client("secretsmanager")
    secret = json.loads(sm.get_secret_value(SecretId="rds/app-mysql")["SecretString"])
    new = {**secret, "password": "rotated-" + os.urandom(6).hex()}
    pending = sm.put_secret_value(
        SecretId="rds/app-mysql", SecretString=json.dumps(new), VersionStages=["AWSPENDING"]
    )
    bed.mariadb.sql(f"ALTER USER '{secret['username']}'@'%' IDENTIFIED BY '{new['password']}'")
    print("rotation: the database now wants the new password (still AWSPENDING)")
    time.sleep(0.5)
    stages = sm.describe_secret(SecretId="rds/app-mysql")["VersionIdsToStages"]
    old = next(v for v, s in stages.items() if "AWSCURRENT" in s)
    sm.update_secret_version_stage(
        SecretId="rds/app-mysql",
        VersionStage="AWSCURRENT",
        MoveToVersionId=pending["VersionId"],
        RemoveFromVersionId=old,
    )
    print("rotation: finished, AWSCURRENT moved to the new version")


if __name__ == "__main__":
    raise SystemExit(main())
