"""The bed's test PKI: a CA the clients trust, a CA nobody trusts, and server certificates.

Server certificates carry `localhost`, `127.0.0.1`, `::1` and the RDS-style names below,
so a client can verify the real endpoint name while its socket goes to loopback
(through a tunnel or libpq's `hostaddr`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trustme

from bed.procs import chown

REGION = "us-east-1"
PG_INSTANCE = "mydb.abc123.us-east-1.rds.amazonaws.com"
PG_CLUSTER = "mydb.cluster-abc123.us-east-1.rds.amazonaws.com"
PG_READER = "mydb.cluster-ro-abc123.us-east-1.rds.amazonaws.com"
MYSQL_INSTANCE = "mydb-mysql.abc123.us-east-1.rds.amazonaws.com"
PROXY = "myproxy.proxy-abc123.us-east-1.rds.amazonaws.com"
LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServerCert:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    untrusted_ca: Path
    postgres: ServerCert
    mysql: ServerCert
    proxy: ServerCert


def make_pki(root: Path) -> Pki:
    """Write the CA files and one certificate per server, owned by the server's OS user."""
    root.mkdir(mode=0o755, exist_ok=True)
    ca, untrusted = trustme.CA(organization_name="securedb bed CA"), trustme.CA()
    ca.cert_pem.write_to_path(root / "ca.pem")
    untrusted.cert_pem.write_to_path(root / "untrusted-ca.pem")
    return Pki(
        ca=root / "ca.pem",
        untrusted_ca=root / "untrusted-ca.pem",
        postgres=_issue(ca, root, "postgres", "postgres", PG_INSTANCE, PG_CLUSTER, PG_READER),
        mysql=_issue(ca, root, "mysql", "mysql", MYSQL_INSTANCE),
        proxy=_issue(ca, root, "proxy", "postgres", PROXY),
    )


def _issue(ca: trustme.CA, root: Path, name: str, owner: str, *names: str) -> ServerCert:
    leaf = ca.issue_cert(*LOOPBACK, *names)
    cert, key = root / f"{name}.crt", root / f"{name}.key"
    leaf.private_key_pem.write_to_path(key)
    with open(cert, "wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    for path in (cert, key):
        chown(path, owner)
    os.chmod(key, 0o600)
    return ServerCert(cert, key)
