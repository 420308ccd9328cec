"""The database refuses a secret's password: rotation's edge cases, on the bed.

Each test owns a PostgreSQL role and a secret in moto, and a connector whose credential
cache runs on a clock the test moves. GetSecretValue calls are seen at the botocore
boundary, where a policy's denial is also stood in for: moto does not enforce IAM, so a
``before-call`` handler answers a denied stage with AWS's AccessDeniedException, which
botocore then raises as it would for the real service.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from bed.bed import Bed
from securedb import errors
from securedb.config import Config
from securedb.connector import Connector
from securedb.credentials import aws

pytestmark = pytest.mark.bed

SECRET_TTL = 3600


class Boundary:
    """GetSecretValue as botocore is about to send it: the stages read, some denied."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.denied: set[str] = set()

    def before_call(self, params: dict[str, Any], **kwargs: Any) -> Any:
        stage = json.loads(params["body"]).get("VersionStage", "AWSCURRENT")
        self.stages.append(stage)
        if stage not in self.denied:
            return None  # on to moto
        error = {
            "Code": "AccessDeniedException",
            "Message": "User is not authorized to perform: secretsmanager:GetSecretValue "
            f"with secretsmanager:VersionStage {stage} because no identity-based policy "
            "allows it",
        }
        return AWSResponse(params["url"], 400, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }


@pytest.fixture
def boundary(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Boundary:
    """A botocore session of this test's own, with the boundary's handler on it."""
    monkeypatch.setattr("securedb.credentials.aws._session", None)
    seen = Boundary()
    aws.session().register("before-call.secrets-manager.GetSecretValue", seen.before_call)
    return seen


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rotation:
    """A role, a secret in RDS's format for it, and a connector on a test clock."""

    def __init__(self, bed: Bed) -> None:
        self.bed = bed
        self.user = f"rot_{uuid.uuid4().hex[:12]}"
        self.sm = boto3.client("secretsmanager")
        self.name = f"rds/{self.user}"
        self.clock = Clock()
        self.connector: Connector | None = None

    def password(self, password: str) -> None:
        """The database's password for the role (setSecret)."""
        self.bed.primary.psql(f"ALTER ROLE {self.user} PASSWORD '{password}'")

    def fields(self, password: str) -> str:
        return json.dumps(
            {
                "username": self.user,
                "password": password,
                "engine": "postgres",
                "host": "localhost",
                "port": self.bed.primary.port,
                "dbname": "app",
            }
        )

    def create(self, password: str) -> str:
        self.bed.primary.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{password}'")
        created = self.sm.create_secret(Name=self.name, SecretString=self.fields(password))
        cfg = Config.from_url(
            None,
            secret_id=self.name,
            ca_bundle=str(self.bed.pki.ca),
            refresh="lazy",
            secret_ttl=SECRET_TTL,
        )
        self.connector = Connector(cfg)
        cache = self.connector.cache
        cache._clock = cache.source._clock = self.clock  # type: ignore[attr-defined]
        return str(created["VersionId"])

    def stage(self, password: str, stage: str) -> str:
        """createSecret: a new version under `stage`."""
        put = self.sm.put_secret_value(
            SecretId=self.name, SecretString=self.fields(password), VersionStages=[stage]
        )
        return str(put["VersionId"])

    def current(self) -> str:
        versions = self.sm.describe_secret(SecretId=self.name)["VersionIdsToStages"]
        [version] = [v for v, stages in versions.items() if "AWSCURRENT" in stages]
        return str(version)

    def connect(self) -> str:
        """Log in and return the password that worked."""
        assert self.connector is not None
        with self.connector.connect() as conn:
            assert conn.execute("SELECT current_user").fetchone() == (self.user,)
            return str(conn.info.password)

    def drop(self) -> None:
        if self.connector is not None:
            self.connector.close()
        self.bed.primary.psql(f"DROP ROLE IF EXISTS {self.user}")


@pytest.fixture
def rotation(bed: Bed, boundary: Boundary) -> Iterator[Rotation]:
    made = Rotation(bed)
    yield made
    made.drop()


def test_pending_denied_is_reported_and_recovers_at_finish(
    rotation: Rotation, boundary: Boundary
) -> None:
    """Between setSecret and finishSecret, with AWSPENDING denied by policy: the refusal
    ends in a CredentialsError naming the denied stage (not a wrong-password error, not a
    secret in the text), no fetch within the backoff, and success once AWSCURRENT moves."""
    boundary.denied.add("AWSPENDING")
    first = rotation.create("rotate-pw-1")
    assert rotation.connect() == "rotate-pw-1"
    pending = rotation.stage("rotate-pw-2", "AWSPENDING")  # createSecret
    rotation.password("rotate-pw-2")  # setSecret: AWSCURRENT is refused from now on
    assert boundary.stages == ["AWSCURRENT"]

    with pytest.raises(errors.CredentialsError) as caught:
        rotation.connect()
    message = str(caught.value)
    assert "not read at AWSPENDING" in message
    assert "AccessDeniedException" in message
    assert "rotate-pw" not in message
    assert caught.value.__cause__ is None
    assert boundary.stages == ["AWSCURRENT", "AWSCURRENT", "AWSPENDING"]

    with pytest.raises(errors.CredentialsError, match="not read at AWSPENDING"):
        rotation.connect()  # within the backoff: the failure again, without a fetch
    assert len(boundary.stages) == 3

    rotation.sm.update_secret_version_stage(  # finishSecret
        SecretId=rotation.name,
        VersionStage="AWSCURRENT",
        MoveToVersionId=pending,
        RemoveFromVersionId=first,
    )
    rotation.clock.now += 60  # past any backoff
    assert rotation.connect() == "rotate-pw-2"
    assert boundary.stages[3:] == ["AWSCURRENT"]  # the new AWSCURRENT, at once


def test_pending_equal_to_the_refused_version_is_not_tried(
    rotation: Rotation, boundary: Boundary
) -> None:
    """AWSPENDING still on the AWSCURRENT version (a finished rotation leaves it there)
    while the database wants another password: one refetch, then AuthenticationError,
    and AWSCURRENT kept for the secret's whole TTL, not the short life of a pending one."""
    version = rotation.create("stale-pw-1")
    rotation.sm.update_secret_version_stage(
        SecretId=rotation.name, VersionStage="AWSPENDING", MoveToVersionId=version
    )
    assert rotation.connect() == "stale-pw-1"
    rotation.password("changed-by-hand-2")  # neither stage has it

    with pytest.raises(errors.AuthenticationError, match="even after fetching it again"):
        rotation.connect()
    assert boundary.stages == ["AWSCURRENT", "AWSCURRENT", "AWSPENDING"]

    rotation.clock.now += 120  # past a pending version's life, well within the TTL
    with pytest.raises(errors.AuthenticationError):
        rotation.connect()
    # The cached AWSCURRENT served until refused, then one refetch: no refresh before it.
    assert boundary.stages[3:] == ["AWSCURRENT", "AWSPENDING"]


def test_a_second_refusal_within_a_second_fetches_nothing(
    rotation: Rotation, boundary: Boundary
) -> None:
    """A wrong password: the first refusal refetches; another within one second reads
    nothing from Secrets Manager; one after the second refetches again."""
    rotation.create("wrong-pw-1")
    rotation.password("right-pw-2")

    with pytest.raises(errors.AuthenticationError, match="even after fetching it again"):
        rotation.connect()
    assert boundary.stages == ["AWSCURRENT", "AWSCURRENT", "AWSPENDING"]

    rotation.clock.now += 0.5
    with pytest.raises(errors.AuthenticationError):
        rotation.connect()
    assert len(boundary.stages) == 3  # rate-limited: no GetSecretValue

    rotation.clock.now += 1.0
    with pytest.raises(errors.AuthenticationError):
        rotation.connect()
    assert boundary.stages[3:] == ["AWSCURRENT", "AWSPENDING"]
