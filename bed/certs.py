"""The bed's test PKI: a CA the clients trust, a CA nobody trusts, and server certificates.

Server certificates carry `localhost`, `127.0.0.1`, `::1` and the RDS-style names below,
so a client can verify the real endpoint name while its socket goes to loopback
(through a tunnel or libpq's `hostaddr`).

`make_rds_like_chain` makes a chain shaped like RDS's own (real RDS certificates are not
available here): a root with the subject and extensions of the bundled RDS roots, an
intermediate under it, and a server certificate for RDS names issued by the intermediate.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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
    authority: trustme.CA = field(repr=False)  # the trusted CA's key: see `issue`


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
        authority=ca,
    )


def issue(pki: Pki, name: str, owner: str, *names: str) -> ServerCert:
    """One more server certificate from the CA the clients trust, for the loopback names
    and `names`, written next to the others as `name`.crt and `name`.key."""
    return _issue(pki.authority, pki.ca.parent, name, owner, *names)


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


RDS_ORGANIZATION, RDS_UNIT = "Amazon Web Services, Inc.", "Amazon RDS"


@dataclass(frozen=True)
class RdsLikeChain:
    root: Path  # PEM: the CA a trust bundle holds, shaped like a bundled RDS root
    chain: Path  # PEM: what an RDS server presents, its certificate then the intermediate
    leaf_only: Path  # PEM: the server's certificate without the intermediate
    key: Path  # the server's private key


def make_rds_like_chain(
    directory: Path, *names: str, now: datetime.datetime, region: str = REGION
) -> RdsLikeChain:
    """Root, intermediate and server certificate for `names`, as RDS lays them out.

    The root's subject reads like a bundled one (``Amazon RDS us-east-1 Root CA ECC384
    bed``), so `securedb.ca` takes it for an RDS root of `region`; it is the bed's own.
    Every certificate is valid from a day before `now`: a caller that asks whether one is
    valid on some day passes the same clock it asks on.
    """
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    root_key, middle_key, leaf_key = (ec.generate_private_key(ec.SECP384R1()) for _ in range(3))
    root_name = _rds_name(f"Amazon RDS {region} Root CA ECC384 bed")
    middle_name = _rds_name(f"Amazon RDS {region} Subordinate CA ECC384 bed.A.1")
    root = (
        _builder(root_name, root_name, root_key, root_key, now, years=100)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .sign(root_key, hashes.SHA384())
    )
    middle = (
        _builder(middle_name, root_name, middle_key, root_key, now, years=40)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .sign(root_key, hashes.SHA384())
    )
    leaf = (
        _builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]),
            middle_name,
            leaf_key,
            middle_key,
            now,
            years=1,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(middle_key, hashes.SHA384())
    )
    pem = serialization.Encoding.PEM
    made = RdsLikeChain(
        directory / "rds-like-root.pem",
        directory / "rds-like-chain.pem",
        directory / "rds-like-leaf.pem",
        directory / "rds-like.key",
    )
    made.root.write_bytes(root.public_bytes(pem))
    made.chain.write_bytes(leaf.public_bytes(pem) + middle.public_bytes(pem))
    made.leaf_only.write_bytes(leaf.public_bytes(pem))
    made.key.write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    made.key.chmod(0o600)
    return made


def _rds_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, RDS_ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, RDS_UNIT),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "WA"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Seattle"),
        ]
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    years: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365 * years))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(False, False, False, False, False, True, True, False, False)
