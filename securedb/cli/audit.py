"""``securedb audit [--region R]``: the guide's common mistakes, found in an AWS account.

Read-only calls only: ``rds:DescribeDBInstances``, ``DescribeDBClusters``,
``DescribeDBProxies``, ``DescribeDBParameters`` and ``DescribeDBClusterParameters`` (for
the parameter groups in use), ``ec2:DescribeSecurityGroups`` (for the groups in use) and
``secretsmanager:DescribeSecret`` (for the secrets the databases and proxies use: never
a secret's value). The rules are in `securedb.cli._rules`. Exit status 1 when a finding
is high or critical, else 0. Needs boto3: ``pip install 'securedb[cli]'``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
from collections.abc import Iterable
from typing import Any

from securedb.cli._rules import SEVERITIES, Account, Finding, findings
from securedb.errors import CredentialsError

__all__ = ["collect", "register"]

FAILING = ("critical", "high")
READ_ONLY_POLICY = (
    "the audit needs rds:Describe*, ec2:DescribeSecurityGroups and "
    "secretsmanager:DescribeSecret (the ReadOnlyAccess policy has them)"
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "audit",
        help="report an AWS account's RDS mistakes: public access, open security groups ...",
        description="Read an account's RDS instances, Aurora clusters, RDS Proxies, their "
        "parameter groups, security groups and secrets (read-only calls), and report the "
        "common mistakes. Exit status 1 if any finding is high or critical.",
    )
    parser.add_argument("--region", help="AWS region (default: AWS_REGION, then the AWS config)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from securedb.credentials import aws

    region = aws.region_or_default(args.region, "securedb audit")
    account = collect(region)
    found = findings(account, datetime.datetime.now(datetime.timezone.utc))
    ok = not any(f["severity"] in FAILING for f in found)
    scanned = {
        "instances": len(account.instances),
        "clusters": len(account.clusters),
        "proxies": len(account.proxies),
        "secrets": len(account.secrets),
    }
    if args.json:
        report = {"ok": ok, "region": region, "scanned": scanned, "findings": found}
        print(json.dumps(report, indent=2))
    else:
        print(_table(region, scanned, found))
    return 0 if ok else 1


def collect(region: str) -> Account:
    """Describe what the rules need, read-only.

    Raises:
        CredentialsError: no AWS credentials, or a call was denied; the message says which.
    """
    boto3 = _boto3()
    session = boto3.session.Session(region_name=region)
    rds, ec2, sm = (session.client(name) for name in ("rds", "ec2", "secretsmanager"))
    try:
        instances = _pages(rds, "describe_db_instances", "DBInstances")
        clusters = _pages(rds, "describe_db_clusters", "DBClusters")
        proxies = _pages(rds, "describe_db_proxies", "DBProxies")
        groups = {
            g["DBParameterGroupName"]
            for db in instances
            if not db.get("DBClusterIdentifier")
            for g in db.get("DBParameterGroups", [])
        }
        cluster_groups = {
            c["DBClusterParameterGroup"] for c in clusters if c.get("DBClusterParameterGroup")
        }
        sg_ids = {
            *(
                g["VpcSecurityGroupId"]
                for item in (*instances, *clusters)
                for g in item.get("VpcSecurityGroups", [])
            ),
            *(g for proxy in proxies for g in proxy.get("VpcSecurityGroupIds", [])),
        }
        secret_arns = {
            *(
                (item.get("MasterUserSecret") or {}).get("SecretArn")
                for item in (*instances, *clusters)
            ),
            *(auth.get("SecretArn") for proxy in proxies for auth in proxy.get("Auth", [])),
        } - {None}
        return Account(
            instances=instances,
            clusters=clusters,
            proxies=proxies,
            parameters={
                g: _tls_parameters(rds, "describe_db_parameters", DBParameterGroupName=g)
                for g in sorted(groups)
            },
            cluster_parameters={
                g: _tls_parameters(
                    rds, "describe_db_cluster_parameters", DBClusterParameterGroupName=g
                )
                for g in sorted(cluster_groups)
            },
            security_groups={
                g["GroupId"]: g
                for g in (
                    _pages(
                        ec2, "describe_security_groups", "SecurityGroups", GroupIds=sorted(sg_ids)
                    )
                    if sg_ids
                    else []
                )
            },
            secrets={arn: _describe_secret(sm, arn) for arn in sorted(secret_arns)},
        )
    except Exception as exc:
        raise _translate(exc) from None


def _boto3() -> Any:
    try:
        return importlib.import_module("boto3")
    except ImportError:
        raise ImportError("securedb audit needs boto3: pip install 'securedb[cli]'") from None


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    paginator = client.get_paginator(operation)
    return [item for page in paginator.paginate(**kwargs) for item in page.get(key, [])]


def _tls_parameters(client: Any, operation: str, **kwargs: Any) -> dict[str, str]:
    """The TLS-enforcing parameters a group sets (values only, nothing else kept)."""
    wanted = ("rds.force_ssl", "require_secure_transport")
    return {
        p["ParameterName"]: str(p["ParameterValue"])
        for p in _pages(client, operation, "Parameters", **kwargs)
        if p.get("ParameterName") in wanted and p.get("ParameterValue") is not None
    }


def _describe_secret(client: Any, arn: str) -> dict[str, Any]:
    """DescribeSecret's metadata (it never holds the value); a secret that is gone says so."""
    try:
        return dict(client.describe_secret(SecretId=arn))
    except Exception as exc:
        if _code(exc) == "ResourceNotFoundException":
            return {"Name": arn, "RotationEnabled": False, "Missing": True}
        raise


def _code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def _translate(exc: Exception) -> CredentialsError:
    code = _code(exc)
    if code is not None:
        operation = getattr(exc, "operation_name", "a describe call")
        return CredentialsError(
            f"securedb audit: AWS said {code} to {operation}; {READ_ONLY_POLICY}"
        )
    from securedb.credentials import aws

    return aws.translate(exc, "securedb audit")


def _table(region: str, scanned: dict[str, int], found: Iterable[Finding]) -> str:
    """One row per finding (severity, code, resource, message), its fix on the next line."""
    rows = [(f["severity"], f["code"], f["resource"], f["message"], f["fix"]) for f in found]
    counted = ", ".join(f"{kind}: {n}" for kind, n in scanned.items())
    head = f"securedb audit of {region} ({counted})"
    if not rows:
        return f"{head}\nno findings"
    titles = ("SEVERITY", "CODE", "RESOURCE")
    widths = [max(len(title), *(len(row[i]) for row in rows)) for i, title in enumerate(titles)]
    lines = [head, _row((*titles, "MESSAGE"), widths)]
    for severity, code, resource, message, fix in rows:
        lines.append(_row((severity, code, resource, message), widths))
        lines.append(_row(("", "", "", f"fix: {fix}"), widths))
    counts = ", ".join(f"{sum(row[0] == s for row in rows)} {s}" for s in SEVERITIES)
    lines.append(f"{len(rows)} findings: {counts}")
    return "\n".join(lines)


def _row(cells: tuple[str, str, str, str], widths: list[int]) -> str:
    padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
    return "  ".join([*padded, cells[3]]).rstrip()
