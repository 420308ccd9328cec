"""The guide's common mistakes as rules over what the AWS describe calls returned.

Pure functions: `findings(account, now)` takes the describe output (`Account`) and
returns `Finding`s with stable codes. `resource` names the instance, cluster, proxy or
secret; a security-group finding names what the group guards: ``legacy-db (sg-0abc)``.
Aurora keeps encryption, IAM, backups, parameters and security groups on the cluster,
so its member instances are only checked for what is theirs (public access, CA).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypedDict

__all__ = ["SEVERITIES", "Account", "Finding", "findings"]

Severity = Literal["critical", "high", "medium", "low"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low")
MIN_BACKUP_DAYS = 7
WORLD = ("0.0.0.0/0", "::/0")
# The TLS-enforcing parameter of each engine family, and the values that enforce it.
TLS_PARAMETERS = {
    "postgresql": ("rds.force_ssl", ("1",)),
    "mysql": ("require_secure_transport", ("ON", "1")),
}
FAMILIES = {
    "postgres": "postgresql",
    "aurora-postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "aurora-mysql": "mysql",
    "aurora": "mysql",
}
NOT_RDS = ("docdb", "neptune")  # DescribeDBInstances lists these too
PROXY_PORTS = {"POSTGRESQL": 5432, "MYSQL": 3306, "SQLSERVER": 1433}
EXPIRED_CAS = {
    "rds-ca-2015": datetime.date(2020, 3, 5),
    "rds-ca-2019": datetime.date(2024, 8, 22),
}
CURRENT_CA = "rds-ca-rsa2048-g1"


class Finding(TypedDict):
    code: str
    severity: Severity
    resource: str
    message: str
    fix: str


@dataclasses.dataclass(frozen=True)
class Account:
    """What the read-only describe calls returned, as boto3 returns it."""

    instances: list[dict[str, Any]]
    clusters: list[dict[str, Any]]
    proxies: list[dict[str, Any]]
    parameters: Mapping[str, Mapping[str, str]]  # DB parameter group -> TLS parameters set
    cluster_parameters: Mapping[str, Mapping[str, str]]  # cluster parameter group -> same
    security_groups: Mapping[str, dict[str, Any]]  # group id -> DescribeSecurityGroups entry
    secrets: Mapping[str, dict[str, Any]]  # ARN -> DescribeSecret (never a value)


def findings(account: Account, now: datetime.datetime) -> list[Finding]:
    """Every finding, the most severe first."""
    found = [
        *(f for db in account.instances for f in _instance(db, account, now)),
        *(f for cluster in account.clusters for f in _cluster(cluster, account)),
        *(f for proxy in account.proxies for f in _proxy(proxy, account)),
        *_secrets(account),
    ]
    return sorted(found, key=lambda f: (SEVERITIES.index(f["severity"]), f["resource"], f["code"]))


def _finding(code: str, severity: Severity, resource: str, message: str, fix: str) -> Finding:
    return {
        "code": code,
        "severity": severity,
        "resource": resource,
        "message": message,
        "fix": fix,
    }


def _instance(db: dict[str, Any], account: Account, now: datetime.datetime) -> Iterator[Finding]:
    name, engine = db["DBInstanceIdentifier"], db.get("Engine", "")
    if engine.startswith(NOT_RDS):
        return
    modify = f"aws rds modify-db-instance --db-instance-identifier {name}"
    if db.get("PubliclyAccessible"):
        yield _finding(
            "public-access",
            "high",
            name,
            f"instance {name} is publicly accessible: its endpoint resolves to a public "
            "address, reachable from the internet wherever a security group lets it",
            f"{modify} --no-publicly-accessible --apply-immediately; reach it through SSM "
            "port forwarding instead",
        )
    yield from _ca(db, name, modify, now)
    if db.get("DBClusterIdentifier"):
        return  # the rest is the cluster's
    port = (db.get("Endpoint") or {}).get("Port") or db.get("DbInstancePort")
    groups = [g["VpcSecurityGroupId"] for g in db.get("VpcSecurityGroups", [])]
    yield from _open_groups(name, "instance", groups, port, account)
    for group in db.get("DBParameterGroups", []):
        params = account.parameters.get(group["DBParameterGroupName"], {})
        yield from _tls(name, engine, group["DBParameterGroupName"], params, cluster=False)
    yield from _common(db, name, engine, modify, replica=bool(_source(db)))


def _cluster(cluster: dict[str, Any], account: Account) -> Iterator[Finding]:
    name, engine = cluster["DBClusterIdentifier"], cluster.get("Engine", "")
    if engine.startswith(NOT_RDS):
        return
    groups = [g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])]
    yield from _open_groups(name, "cluster", groups, cluster.get("Port"), account)
    group = cluster.get("DBClusterParameterGroup")
    if group:
        params = account.cluster_parameters.get(group, {})
        yield from _tls(name, engine, group, params, cluster=True)
    modify = f"aws rds modify-db-cluster --db-cluster-identifier {name}"
    yield from _common(cluster, name, engine, modify, replica=False)


def _proxy(proxy: dict[str, Any], account: Account) -> Iterator[Finding]:
    name = proxy["DBProxyName"]
    if not proxy.get("RequireTLS"):
        yield _finding(
            "proxy-tls-optional",
            "high",
            name,
            f"RDS Proxy {name} accepts clients without TLS (RequireTLS is false)",
            f"aws rds modify-db-proxy --db-proxy-name {name} --require-tls",
        )
    port = PROXY_PORTS.get(proxy.get("EngineFamily", ""))
    yield from _open_groups(name, "proxy", proxy.get("VpcSecurityGroupIds", []), port, account)


def _secrets(account: Account) -> Iterator[Finding]:
    users = _secret_users(account)
    for arn, secret in sorted(account.secrets.items()):
        if secret.get("RotationEnabled"):
            continue
        name = secret.get("Name") or arn
        owned = secret.get("OwningService") == "rds"
        yield _finding(
            "secret-rotation-off",
            "medium",
            name,
            f"secret {name} (used by {', '.join(users.get(arn, ['?']))}) is never rotated",
            f"aws secretsmanager rotate-secret --secret-id {arn} --rotation-rules "
            "AutomaticallyAfterDays=7"
            + ("" if owned else " --rotation-lambda-arn ARN_OF_A_ROTATION_FUNCTION")
            + "; or drop the password for IAM database authentication",
        )


def _secret_users(account: Account) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for kind, items, key in (
        ("instance", account.instances, "DBInstanceIdentifier"),
        ("cluster", account.clusters, "DBClusterIdentifier"),
    ):
        for item in items:
            arn = (item.get("MasterUserSecret") or {}).get("SecretArn")
            if arn:
                users.setdefault(arn, []).append(f"{kind} {item[key]}")
    for proxy in account.proxies:
        for auth in proxy.get("Auth", []):
            if auth.get("SecretArn"):
                users.setdefault(auth["SecretArn"], []).append(f"proxy {proxy['DBProxyName']}")
    return users


def _open_groups(
    name: str, kind: str, groups: list[str], port: int | None, account: Account
) -> Iterator[Finding]:
    for group_id in groups:
        group = account.security_groups.get(group_id, {})
        for rule in group.get("IpPermissions", []):
            if not _covers(rule, port):
                continue
            cidrs = [r["CidrIp"] for r in rule.get("IpRanges", []) if r.get("CidrIp") in WORLD]
            cidrs += [
                r["CidrIpv6"] for r in rule.get("Ipv6Ranges", []) if r.get("CidrIpv6") in WORLD
            ]
            if cidrs:
                yield _finding(
                    "sg-open-to-world",
                    "critical",
                    f"{name} ({group_id})",
                    f"security group {group_id} of {kind} {name} lets {' and '.join(cidrs)} "
                    f"reach port {port or 'any'}: the database port is open to the internet",
                    f"revoke the rule that admits {' and '.join(cidrs)} (aws ec2 "
                    f"revoke-security-group-ingress --group-id {group_id} --ip-permissions ...) "
                    f"and allow port {port} only from the application tier's security group "
                    f"(aws ec2 authorize-security-group-ingress --group-id {group_id} "
                    f"--protocol tcp --port {port} --source-group sg-APP)",
                )
                break


def _covers(rule: dict[str, Any], port: int | None) -> bool:
    if rule.get("IpProtocol") == "-1":
        return True
    if rule.get("IpProtocol") not in ("tcp", "6"):
        return False
    low, high = rule.get("FromPort"), rule.get("ToPort")
    return port is None or low is None or high is None or low <= port <= high


def _tls(
    name: str, engine: str, group: str, params: Mapping[str, str], cluster: bool
) -> Iterator[Finding]:
    family = FAMILIES.get(engine)
    if family is None:
        return
    param, enforcing = TLS_PARAMETERS[family]
    value = params.get(param)
    if value is not None and value.upper() in enforcing:
        return
    kind = "cluster parameter group" if cluster else "parameter group"
    command = (
        "modify-db-cluster-parameter-group --db-cluster-parameter-group-name"
        if cluster
        else "modify-db-parameter-group --db-parameter-group-name"
    )
    fix = (
        f"aws rds {command} {group} --parameters "
        f"ParameterName={param},ParameterValue={enforcing[0]},ApplyMethod=immediate"
    )
    if group.startswith("default."):
        fix = (
            f"create a {kind} with {param}={enforcing[0]} and attach it ({group} cannot be changed)"
        )
    yield _finding(
        "tls-not-enforced",
        "high",
        name,
        f"{param} is {value if value is not None else 'not set'} in {kind} {group} of {name}: "
        "the server accepts connections without TLS",
        fix,
    )


def _common(
    item: dict[str, Any], name: str, engine: str, modify: str, replica: bool
) -> Iterator[Finding]:
    """What instances (outside a cluster) and clusters share: IAM, encryption, resilience."""
    if engine in FAMILIES and not item.get("IAMDatabaseAuthenticationEnabled"):
        yield _finding(
            "iam-auth-disabled",
            "medium",
            name,
            f"IAM database authentication is disabled on {name}: only stored passwords log in",
            f"{modify} --enable-iam-database-authentication --apply-immediately",
        )
    if not item.get("StorageEncrypted"):
        yield _finding(
            "storage-unencrypted",
            "high",
            name,
            f"the storage of {name} is not encrypted at rest (nor its snapshots and backups)",
            "encryption cannot be turned on in place: snapshot it, copy the snapshot with "
            "--kms-key-id, restore from the copy, and switch over",
        )
    if not item.get("DeletionProtection"):
        yield _finding(
            "deletion-protection-off",
            "low",
            name,
            f"{name} can be deleted by one API call (deletion protection is off)",
            f"{modify} --deletion-protection",
        )
    if replica:
        return
    if not item.get("MultiAZ"):
        yield _finding(
            "single-az",
            "low",
            name,
            f"{name} runs in one availability zone: a zone outage takes it down",
            f"{modify} --multi-az"
            if "cluster" not in modify
            else "add a reader instance in another availability zone",
        )
    days = item.get("BackupRetentionPeriod") or 0
    if days < MIN_BACKUP_DAYS:
        yield _finding(
            "backup-retention-short",
            "low",
            name,
            f"{name} keeps automated backups for {days} day{'' if days == 1 else 's'} "
            f"(less than {MIN_BACKUP_DAYS})",
            f"{modify} --backup-retention-period {MIN_BACKUP_DAYS}",
        )


def _ca(db: dict[str, Any], name: str, modify: str, now: datetime.datetime) -> Iterator[Finding]:
    ca = db.get("CACertificateIdentifier") or ""
    expired = next((day for prefix, day in EXPIRED_CAS.items() if ca.startswith(prefix)), None)
    valid_till = (db.get("CertificateDetails") or {}).get("ValidTill")
    if expired is None and valid_till is not None and valid_till < now:
        expired = valid_till.date()
    if expired is None:
        return
    yield _finding(
        "ca-outdated",
        "high",
        name,
        f"{name} uses the CA {ca}, which expired on {expired}: clients that verify TLS "
        "refuse it, and clients that still connect do not verify",
        f"{modify} --ca-certificate-identifier {CURRENT_CA} --apply-immediately "
        "(clients need the current RDS CA bundle)",
    )


def _source(db: dict[str, Any]) -> str | None:
    return db.get("ReadReplicaSourceDBInstanceIdentifier")
