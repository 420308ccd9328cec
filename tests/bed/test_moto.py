"""moto's server answers boto3 over HTTP, found through AWS_ENDPOINT_URL."""

from __future__ import annotations

import json

import boto3
import pytest

pytestmark = pytest.mark.bed


def test_secret_create_get_rotate(aws_env: dict[str, str]) -> None:
    sm = boto3.client("secretsmanager")
    first = {
        "username": "app_user",
        "password": "first-password",
        "engine": "postgres",
        "host": "mydb.abc123.us-east-1.rds.amazonaws.com",
        "port": 5432,
        "dbname": "app",
    }
    arn = sm.create_secret(Name="rds/app", SecretString=json.dumps(first))["ARN"]
    assert json.loads(sm.get_secret_value(SecretId="rds/app")["SecretString"]) == first

    # AWS's rotation: stage AWSPENDING, then move AWSCURRENT onto it.
    pending = sm.put_secret_value(
        SecretId=arn,
        SecretString=json.dumps({**first, "password": "second-password"}),
        VersionStages=["AWSPENDING"],
    )
    current_id = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    old = next(v for v, stages in current_id.items() if "AWSCURRENT" in stages)
    staged = sm.get_secret_value(SecretId=arn, VersionStage="AWSPENDING")
    assert json.loads(staged["SecretString"])["password"] == "second-password"
    sm.update_secret_version_stage(
        SecretId=arn,
        VersionStage="AWSCURRENT",
        MoveToVersionId=pending["VersionId"],
        RemoveFromVersionId=old,
    )
    now = sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
    assert json.loads(now["SecretString"])["password"] == "second-password"
    assert now["VersionId"] == pending["VersionId"]


def test_sts_rds_and_ec2_answer(aws_env: dict[str, str]) -> None:
    assert boto3.client("sts").get_caller_identity()["Account"]
    rds = boto3.client("rds")
    rds.create_db_instance(
        DBInstanceIdentifier="mydb",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="admin_user",
        MasterUserPassword="admin-password-1",
        AllocatedStorage=20,
    )
    found = rds.describe_db_instances(DBInstanceIdentifier="mydb")["DBInstances"]
    assert found[0]["Engine"] == "postgres"
    assert boto3.client("ec2").describe_vpcs()["Vpcs"]


def test_moto_reset_between_tests(aws_env: dict[str, str]) -> None:
    assert boto3.client("secretsmanager").list_secrets()["SecretList"] == []
