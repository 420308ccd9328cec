"""The bed as the soak drives it: the table, the rotating secret, the endpoints' forwarders,
and the faults (rotation, partition, writer flip).

The writer is reached as the cluster endpoint's name through a forwarder that plays its
DNS, and the replica as the reader endpoint's name through another; a flip stops the
writer, promotes the synchronous replica and points the writer's forwarder at it
(tests/test_failover_load.py does the same). The partition drops every packet on the
reader's forwarder port. A rotation takes AWS's steps: createSecret (AWSPENDING),
setSecret (the role's password on the writer), finishSecret (AWSCURRENT moves).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import boto3  # type: ignore[import-untyped]

from bed import certs, postgres
from bed.bed import Bed
from bed.postgres import Postgres
from benchmarks.soak import events

SECRET_USER = "soak_user"


class Fleet:
    """What the soak set up on `bed`; `restore` leaves the pair as it found it."""

    def __init__(self, bed: Bed) -> None:
        self.bed = bed
        self.writer: Postgres = bed.primary
        self.secret_id = f"soak/{bed.run_id}/{secrets.token_hex(4)}"
        self.password = secrets.token_urlsafe(18)
        self.pending: tuple[str, str] | None = None  # (version id, password)
        self.partitioned = self.flipped = False
        aws = bed.aws_env()
        self.secretsmanager: Any = boto3.client(
            "secretsmanager",
            endpoint_url=aws["AWS_ENDPOINT_URL"],
            region_name=aws["AWS_REGION"],
            aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"],
        )
        bed.primary.psql(
            "DROP TABLE IF EXISTS notes;"
            f"DROP ROLE IF EXISTS {SECRET_USER};"
            f"CREATE ROLE {SECRET_USER} LOGIN PASSWORD '{self.password}';"
            "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);"
            f"GRANT ALL ON notes, notes_id_seq TO {postgres.IAM_USER}, {SECRET_USER}",
            database="app",
        )
        bed.primary.set_synchronous(bed.replica.name)  # as Multi-AZ: a commit is on both
        self.secretsmanager.create_secret(
            Name=self.secret_id, SecretString=self._text(self.password)
        )
        self.writer_fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
        self.reader_fwd = bed.forwarder(("127.0.0.1", bed.replica.port))

    @staticmethod
    def _text(password: str) -> str:
        return json.dumps({"engine": "postgres", "username": SECRET_USER, "password": password})

    def env(self) -> dict[str, dict[str, str]]:
        """Each app's environment on top of the AWS one: Django on IAM, FastAPI on the secret."""
        writer = f"{certs.PG_CLUSTER}:5432/app"
        common = {"SECUREDB_CA_BUNDLE": str(self.bed.pki.ca), "APP_STATS": "1"}
        return {
            "django": {
                **common,
                "SECUREDB_URL": f"postgresql://{postgres.IAM_USER}@{writer}",
                "SECUREDB_AUTH": "iam",
                "SECUREDB_IAM_TOKEN_TTL": str(events.IAM_TOKEN_TTL),
                "SECUREDB_TUNNEL": f"127.0.0.1:{self.writer_fwd.port}",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
            },
            "fastapi": {
                **common,
                "SECUREDB_URL": f"postgresql://{writer}",
                "SECUREDB_SECRET_ID": self.secret_id,
                "SECUREDB_SECRET_TTL": str(events.SECRET_TTL),
                "SECUREDB_TUNNEL": f"127.0.0.1:{self.writer_fwd.port}",
                "READER_URL": f"postgresql://{certs.PG_READER}:5432/app",
                "READER_TUNNEL": f"127.0.0.1:{self.reader_fwd.port}",
            },
        }

    def rotate_create(self) -> None:
        password = secrets.token_urlsafe(18)
        version = self.secretsmanager.put_secret_value(
            SecretId=self.secret_id, SecretString=self._text(password), VersionStages=["AWSPENDING"]
        )["VersionId"]
        self.pending = (version, password)

    def rotate_set(self) -> None:
        assert self.pending is not None
        self.writer.psql(f"ALTER ROLE {SECRET_USER} PASSWORD '{self.pending[1]}'")

    def rotate_finish(self) -> None:
        assert self.pending is not None
        stages = self.secretsmanager.describe_secret(SecretId=self.secret_id)["VersionIdsToStages"]
        [current] = [v for v, names in stages.items() if "AWSCURRENT" in names]
        self.secretsmanager.update_secret_version_stage(
            SecretId=self.secret_id,
            VersionStage="AWSCURRENT",
            MoveToVersionId=self.pending[0],
            RemoveFromVersionId=current,
        )
        self.password, self.pending = self.pending[1], None

    def partition(self) -> None:
        self.bed.partition(self.reader_fwd.port)
        self.partitioned = True

    def heal(self) -> None:
        if self.partitioned:
            self.bed.heal(self.reader_fwd.port)
            self.partitioned = False

    def flip(self) -> None:
        """The writer fails over to the synchronous replica."""
        self.flipped = True
        self.bed.primary.stop("immediate")
        self.bed.replica.promote()
        self.writer_fwd.switch(("127.0.0.1", self.bed.replica.port))
        self.writer = self.bed.replica

    def notes(self) -> dict[int, str]:
        """Every note on the writer: id → body."""
        rows = self.writer.psql("SELECT id, body FROM notes", database="app").splitlines()
        return {int(i): body for i, body in (row.split("|", 1) for row in rows if row)}

    def restore(self) -> None:
        """Heal, stop the forwarders, and bring the pair back as it was (async replica)."""
        self.heal()
        for fwd in (self.writer_fwd, self.reader_fwd):
            fwd.stop()
        self.secretsmanager.close()
        if self.flipped:
            self.bed.rebuild_pair()
        else:
            self.bed.primary.set_synchronous(None)
