"""The Django backend against the bed: IAM, a secret, and a tunnel to an RDS name."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from bed import certs, postgres
from bed.bed import Bed

django = pytest.importorskip("django")

pytestmark = pytest.mark.bed


@pytest.fixture(scope="module")
def settings() -> Any:
    from django.conf import settings as django_settings

    if not django_settings.configured:
        django_settings.configure(DATABASES={}, USE_TZ=True, INSTALLED_APPS=[])
        django.setup()
    return django_settings


def open_alias(alias: str, database: dict[str, Any]) -> Any:
    from django.db import connections

    connections.settings[alias] = {
        "TIME_ZONE": None,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "AUTOCOMMIT": True,
        "ATOMIC_REQUESTS": False,
        "TEST": {},
        "USER": "",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
        **database,
    }
    return connections.create_connection(alias)


def facts(connection: Any) -> tuple[str, bool]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        user, ssl_on = cursor.fetchone()
    return user, ssl_on


def test_iam_through_a_tunnel(settings: Any, bed: Bed, aws_env: dict[str, str]) -> None:
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    conn = open_alias(
        "iam",
        {
            "ENGINE": "securedb.contrib.django.postgresql",
            "NAME": "app",
            "USER": "iam_user",
            "HOST": certs.PG_INSTANCE,
            "PORT": 5432,
            "OPTIONS": {
                "securedb": {
                    "auth": "iam",
                    "ca_bundle": str(bed.pki.ca),
                    "tunnel": f"127.0.0.1:{fwd.port}",
                }
            },
        },
    )
    try:
        assert facts(conn) == ("iam_user", True)
        conn.close()
        assert facts(conn) == ("iam_user", True)  # a new connection, the cached token
        assert fwd.accepted == 2
    finally:
        conn.close()


def test_rds_managed_secret(settings: Any, bed: Bed, aws_env: dict[str, str]) -> None:
    boto3.client("secretsmanager").create_secret(
        Name="rds/django",
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "host": "localhost",
                "port": bed.primary.port,
                "dbname": "app",
                "username": postgres.APP_USER,
                "password": postgres.APP_PASSWORD,
            }
        ),
    )
    conn = open_alias(
        "secret",
        {
            "ENGINE": "securedb.contrib.django.postgresql",
            "NAME": "app",
            "OPTIONS": {"securedb": {"secret_id": "rds/django", "ca_bundle": str(bed.pki.ca)}},
        },
    )
    try:
        assert facts(conn) == ("app_user", True)
    finally:
        conn.close()
