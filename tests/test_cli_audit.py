"""`securedb audit` against the bed's moto account, seeded with one resource per mistake
of the guide and one well-configured instance; and its rules on what moto cannot make."""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

import boto3
import pytest

from bed.bed import Bed
from securedb import cli
from securedb.cli import _rules

GOOD_CA = "rds-ca-rsa2048-g1"


class Account:
    """A moto account with a VPC, an application security group, and helpers to add
    databases that are well configured except for what a test overrides."""

    def __init__(self) -> None:
        self.ec2 = boto3.client("ec2")
        self.rds = boto3.client("rds")
        self.sm = boto3.client("secretsmanager")
        self.vpc = self.ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        self.subnets = [s["SubnetId"] for s in self.ec2.describe_subnets()["Subnets"]][:2]
        self.app_sg = self.group("app-tier")
        self.db_sg = self.group("db", source_group=self.app_sg)
        self.open_sg = self.group("legacy-open", world=True)
        self.parameter_group("pg-tls", "postgres15", "rds.force_ssl", "1")
        self.parameter_group("pg-plain", "postgres15", "rds.force_ssl", "0")
        self.parameter_group("mysql-tls", "mysql8.0", "require_secure_transport", "ON")

    def group(self, name: str, source_group: str | None = None, world: bool = False) -> str:
        group = self.ec2.create_security_group(GroupName=name, Description=name, VpcId=self.vpc)
        rule: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 5432}
        if source_group:
            rule["UserIdGroupPairs"] = [{"GroupId": source_group}]
        if world:
            rule["IpRanges"] = [{"CidrIp": "0.0.0.0/0"}]
            rule["Ipv6Ranges"] = [{"CidrIpv6": "::/0"}]
        self.ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[rule])
        return str(group["GroupId"])

    def parameter_group(self, name: str, family: str, parameter: str, value: str) -> None:
        self.rds.create_db_parameter_group(
            DBParameterGroupName=name, DBParameterGroupFamily=family, Description=name
        )
        self.rds.modify_db_parameter_group(
            DBParameterGroupName=name,
            Parameters=[
                {"ParameterName": parameter, "ParameterValue": value, "ApplyMethod": "immediate"}
            ],
        )

    def rotate(self, secret_arn: str) -> None:
        """Rotation on, the value kept (moto needs no Lambda for that; RDS-managed secrets
        rotate by default)."""
        self.sm.rotate_secret(
            SecretId=secret_arn,
            RotationRules={"AutomaticallyAfterDays": 7},
            RotateImmediately=False,
        )

    def instance(self, name: str, engine: str = "postgres", **overrides: Any) -> dict[str, Any]:
        options: dict[str, Any] = {
            "DBInstanceIdentifier": name,
            "Engine": engine,
            "EngineVersion": "15.4" if engine == "postgres" else "8.0.35",
            "DBInstanceClass": "db.t3.micro",
            "AllocatedStorage": 20,
            "MasterUsername": "dbadmin",
            "ManageMasterUserPassword": True,
            "PubliclyAccessible": False,
            "StorageEncrypted": True,
            "EnableIAMDatabaseAuthentication": True,
            "CACertificateIdentifier": GOOD_CA,
            "MultiAZ": True,
            "BackupRetentionPeriod": 7,
            "DeletionProtection": True,
            "DBParameterGroupName": "pg-tls" if engine == "postgres" else "mysql-tls",
            "VpcSecurityGroupIds": [self.db_sg],
            **overrides,
        }
        options = {k: v for k, v in options.items() if v is not None}
        self.rds.create_db_instance(**options)
        db = self.rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
        if "MasterUserSecret" in db:
            self.rotate(db["MasterUserSecret"]["SecretArn"])
        return dict(db)

    def secret(self, name: str, rotated: bool) -> str:
        arn = self.sm.create_secret(
            Name=name, SecretString=json.dumps({"username": "proxy_user", "password": "pw-0"})
        )["ARN"]
        if rotated:
            self.rotate(arn)
        return str(arn)

    def proxy(self, name: str, secret_arn: str, require_tls: bool) -> None:
        self.rds.create_db_proxy(
            DBProxyName=name,
            EngineFamily="POSTGRESQL",
            Auth=[{"AuthScheme": "SECRETS", "SecretArn": secret_arn, "IAMAuth": "REQUIRED"}],
            RoleArn="arn:aws:iam::123456789012:role/proxy-secrets",
            VpcSubnetIds=self.subnets,
            VpcSecurityGroupIds=[self.db_sg],
            RequireTLS=require_tls,
        )

    def aurora(self, name: str, secure_transport: str) -> None:
        self.rds.create_db_cluster_parameter_group(
            DBClusterParameterGroupName=f"{name}-params",
            DBParameterGroupFamily="aurora-mysql8.0",
            Description=name,
        )
        self.rds.modify_db_cluster_parameter_group(
            DBClusterParameterGroupName=f"{name}-params",
            Parameters=[
                {
                    "ParameterName": "require_secure_transport",
                    "ParameterValue": secure_transport,
                    "ApplyMethod": "immediate",
                }
            ],
        )
        self.rds.create_db_cluster(
            DBClusterIdentifier=name,
            Engine="aurora-mysql",
            MasterUsername="dbadmin",
            ManageMasterUserPassword=True,
            StorageEncrypted=True,
            EnableIAMDatabaseAuthentication=True,
            DeletionProtection=True,
            BackupRetentionPeriod=7,
            DBClusterParameterGroupName=f"{name}-params",
            VpcSecurityGroupIds=[self.db_sg],
        )
        for zone in ("us-east-1a", "us-east-1b"):
            self.rds.create_db_instance(
                DBInstanceIdentifier=f"{name}-{zone[-1]}",
                DBClusterIdentifier=name,
                Engine="aurora-mysql",
                DBInstanceClass="db.r6g.large",
                AvailabilityZone=zone,
                PubliclyAccessible=False,
                CACertificateIdentifier=GOOD_CA,
            )
        cluster = self.rds.describe_db_clusters(DBClusterIdentifier=name)["DBClusters"][0]
        self.rotate(cluster["MasterUserSecret"]["SecretArn"])


def audit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    status = cli.main(["audit", "--json", *args])
    return status, json.loads(capsys.readouterr().out)


def pairs(report: dict[str, Any], *severities: str) -> set[tuple[str, str]]:
    return {
        (f["code"], f["resource"])
        for f in report["findings"]
        if not severities or f["severity"] in severities
    }


@pytest.mark.bed
def test_a_well_configured_account_has_no_findings(
    bed: Bed, aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    account = Account()
    account.instance("good-db")
    account.instance("good-mysql", engine="mysql")
    account.proxy("good-proxy", account.secret("proxy/good", rotated=True), require_tls=True)
    account.aurora("good-aurora", secure_transport="ON")
    status, report = audit(capsys)
    assert (status, report["findings"]) == (0, [])
    assert report["ok"] is True
    assert report["scanned"] == {"instances": 4, "clusters": 1, "proxies": 1, "secrets": 4}


@pytest.mark.bed
def test_every_mistake_is_reported_for_its_resource(
    bed: Bed, aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    account = Account()
    account.instance("good-db")
    account.instance("public-db", PubliclyAccessible=True)
    account.instance("legacy-db", VpcSecurityGroupIds=[account.open_sg])
    account.instance("plain-pg", DBParameterGroupName="pg-plain")
    account.instance("plain-mysql", engine="mysql", DBParameterGroupName=None)  # the default
    account.instance("noiam-db", EnableIAMDatabaseAuthentication=False)
    account.instance("unencrypted-db", StorageEncrypted=False)
    account.instance("oldca-db", CACertificateIdentifier="rds-ca-2019")
    account.instance("fragile-db", DeletionProtection=False, MultiAZ=False, BackupRetentionPeriod=1)
    account.proxy("open-proxy", account.secret("proxy/rotated", rotated=True), require_tls=False)
    account.proxy("static-proxy", account.secret("proxy/static", rotated=False), require_tls=True)
    account.aurora("plain-aurora", secure_transport="OFF")

    status, report = audit(capsys)

    assert status == 1
    assert report["ok"] is False
    assert pairs(report, "critical", "high") == {
        ("public-access", "public-db"),
        ("sg-open-to-world", f"legacy-db ({account.open_sg})"),
        ("tls-not-enforced", "plain-pg"),
        ("tls-not-enforced", "plain-mysql"),
        ("tls-not-enforced", "plain-aurora"),
        ("storage-unencrypted", "unencrypted-db"),
        ("ca-outdated", "oldca-db"),
        ("proxy-tls-optional", "open-proxy"),
    }
    assert pairs(report, "medium", "low") == {
        ("iam-auth-disabled", "noiam-db"),
        ("secret-rotation-off", "proxy/static"),
        ("deletion-protection-off", "fragile-db"),
        ("single-az", "fragile-db"),
        ("backup-retention-short", "fragile-db"),
    }
    assert not [f for f in report["findings"] if f["resource"].startswith("good-db")]
    severity = {f["code"]: f["severity"] for f in report["findings"]}
    assert severity == {
        "sg-open-to-world": "critical",
        "public-access": "high",
        "tls-not-enforced": "high",
        "storage-unencrypted": "high",
        "ca-outdated": "high",
        "proxy-tls-optional": "high",
        "iam-auth-disabled": "medium",
        "secret-rotation-off": "medium",
        "deletion-protection-off": "low",
        "single-az": "low",
        "backup-retention-short": "low",
    }
    for finding in report["findings"]:
        assert set(finding) == {"code", "severity", "resource", "message", "fix"}
        assert finding["message"]
        assert finding["fix"]
    by_code = {f["code"]: f for f in report["findings"]}
    assert "0.0.0.0/0 and ::/0 reach port 5432" in by_code["sg-open-to-world"]["message"]
    assert "used by proxy static-proxy" in by_code["secret-rotation-off"]["message"]
    assert "pw-0" not in json.dumps(report)  # DescribeSecret only: never a value


@pytest.mark.bed
def test_human_output_is_a_table(
    bed: Bed, aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    account = Account()
    account.instance("legacy-db", VpcSecurityGroupIds=[account.open_sg], MultiAZ=False)
    assert cli.main(["audit", "--region", "us-east-1"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "securedb audit of us-east-1 (instances: 1, clusters: 0, proxies: 0, secrets: 1)"
    )
    assert lines[1].split() == ["SEVERITY", "CODE", "RESOURCE", "MESSAGE"]
    column = lines[1].index("MESSAGE")
    assert lines[2].startswith(f"critical  sg-open-to-world  legacy-db ({account.open_sg})")
    assert lines[3].startswith(" " * column + "fix: revoke the rule that admits 0.0.0.0/0")
    assert lines[4].startswith("low       single-az")
    assert lines[-1] == "2 findings: 1 critical, 0 high, 0 medium, 1 low"


@pytest.mark.bed
def test_only_low_findings_exit_0(
    bed: Bed, aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    Account().instance("fragile-db", DeletionProtection=False)
    status, report = audit(capsys)
    assert status == 0
    assert report["ok"] is True
    assert pairs(report) == {("deletion-protection-off", "fragile-db")}


def test_no_aws_credentials_is_one_line_and_status_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never reached
    assert cli.main(["audit", "--region", "eu-west-2"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        err == "securedb: securedb audit: no AWS credentials found; set AWS_PROFILE or the "
        "AWS_ACCESS_KEY_ID pair, or attach an IAM role\n"
    )


def test_without_boto3_the_message_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    assert cli.main(["audit", "--region", "eu-west-2"]) == 1
    assert "pip install 'securedb[cli]'" in capsys.readouterr().err


# What moto cannot make: a CA expiry date from CertificateDetails, other protocols.


NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)


def rules_account(**parts: Any) -> _rules.Account:
    empty: dict[str, Any] = {
        "instances": [],
        "clusters": [],
        "proxies": [],
        "parameters": {},
        "cluster_parameters": {},
        "security_groups": {},
        "secrets": {},
    }
    return _rules.Account(**{**empty, **parts})


def good_instance(**overrides: Any) -> dict[str, Any]:
    return {
        "DBInstanceIdentifier": "db1",
        "Engine": "postgres",
        "Endpoint": {"Port": 5432},
        "PubliclyAccessible": False,
        "StorageEncrypted": True,
        "IAMDatabaseAuthenticationEnabled": True,
        "CACertificateIdentifier": GOOD_CA,
        "MultiAZ": True,
        "BackupRetentionPeriod": 7,
        "DeletionProtection": True,
        "DBParameterGroups": [{"DBParameterGroupName": "pg-tls"}],
        "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-1"}],
        **overrides,
    }


def codes(account: _rules.Account) -> set[tuple[str, str]]:
    return {(f["code"], f["resource"]) for f in _rules.findings(account, NOW)}


@pytest.mark.parametrize(
    ("rule", "open_"),
    [
        ({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, True),
        (
            {
                "IpProtocol": "tcp",
                "FromPort": 0,
                "ToPort": 65535,
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            },
            True,
        ),
        (
            {
                "IpProtocol": "tcp",
                "FromPort": 3306,
                "ToPort": 3306,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
            False,
        ),
        (
            {
                "IpProtocol": "udp",
                "FromPort": 5432,
                "ToPort": 5432,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
            False,
        ),
        (
            {
                "IpProtocol": "tcp",
                "FromPort": 5432,
                "ToPort": 5432,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
            },
            False,
        ),
    ],
)
def test_open_to_world_means_the_database_port_from_anywhere(
    rule: dict[str, Any], open_: bool
) -> None:
    account = rules_account(
        instances=[good_instance()],
        parameters={"pg-tls": {"rds.force_ssl": "1"}},
        security_groups={"sg-1": {"GroupId": "sg-1", "IpPermissions": [rule]}},
    )
    assert codes(account) == ({("sg-open-to-world", "db1 (sg-1)")} if open_ else set())


def test_a_ca_past_its_validity_is_outdated_whatever_its_name() -> None:
    details = {"CAIdentifier": "rds-ca-future", "ValidTill": NOW - datetime.timedelta(days=1)}
    account = rules_account(
        instances=[
            good_instance(CACertificateIdentifier="rds-ca-future", CertificateDetails=details)
        ],
        parameters={"pg-tls": {"rds.force_ssl": "1"}},
    )
    assert codes(account) == {("ca-outdated", "db1")}


def test_a_default_parameter_group_gets_a_fix_it_can_take() -> None:
    account = rules_account(
        instances=[
            good_instance(DBParameterGroups=[{"DBParameterGroupName": "default.postgres15"}])
        ],
        parameters={"default.postgres15": {"rds.force_ssl": "0"}},
    )
    [finding] = _rules.findings(account, NOW)
    assert finding["code"] == "tls-not-enforced"
    assert "rds.force_ssl is 0" in finding["message"]
    assert finding["fix"].startswith("create a parameter group with rds.force_ssl=1")


def test_read_replicas_and_other_services_are_not_flagged_for_what_is_not_theirs() -> None:
    replica = good_instance(
        DBInstanceIdentifier="replica",
        MultiAZ=False,
        BackupRetentionPeriod=0,
        ReadReplicaSourceDBInstanceIdentifier="db1",
    )
    docdb = {"DBInstanceIdentifier": "docs", "Engine": "docdb", "PubliclyAccessible": True}
    account = rules_account(
        instances=[replica, docdb], parameters={"pg-tls": {"rds.force_ssl": "1"}}
    )
    assert codes(account) == set()
