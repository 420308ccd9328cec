"""The bundled CA snapshot: check a downloaded trust store and refresh the bundle.

A maintainer runs ``securedb ca refresh`` to replace ``data/rds-ca-bundle.pem`` with
AWS's current ``global-bundle.pem`` and rebuild ``data/rds-proxy-bundle.pem`` (RDS CAs
plus the Amazon Trust Services roots). Downloads go over verified HTTPS, and nothing is
written unless every file passes `check_bundle`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import ssl
import urllib.request
from pathlib import Path

from securedb.errors import TLSError
from securedb.tls import DATA

__all__ = ["ATS_URLS", "RDS_URL", "check_bundle", "refresh"]

RDS_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
ATS_URLS = tuple(
    f"https://www.amazontrust.com/repository/{name}.pem"
    for name in ("AmazonRootCA1", "AmazonRootCA2", "AmazonRootCA3", "AmazonRootCA4", "SFSRootCAG2")
)
MIN_RDS_CERTS = 10
RDS_ISSUERS = (b"Amazon RDS",)
ATS_ISSUERS = (b"Amazon", b"Starfield")
PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
MAX_DOWNLOAD = 4 * 1024 * 1024


def check_bundle(
    pem: bytes, source: str, issuers: tuple[bytes, ...], minimum: int = 1
) -> list[bytes]:
    """The certificates of `pem`, each checked, or a TLSError saying what is wrong.

    Every block must decode and load as a CA and name one of `issuers` in its DER, and
    there must be at least `minimum` of them; nothing else may be in the file.
    """
    blocks = PEM_BLOCK.findall(pem)
    if len(blocks) < minimum:
        raise TLSError(f"{source}: {len(blocks)} certificates, expected at least {minimum}")
    if PEM_BLOCK.sub(b"", pem).strip():
        raise TLSError(f"{source}: text outside the PEM certificate blocks")
    for number, block in enumerate(blocks, 1):
        try:
            der = ssl.PEM_cert_to_DER_cert(block.decode("ascii"))
            ssl.create_default_context(cadata=der)
        except (ValueError, ssl.SSLError, UnicodeDecodeError):
            raise TLSError(f"{source}: certificate {number} does not parse") from None
        if not any(issuer in der for issuer in issuers):
            names = " or ".join(issuer.decode() for issuer in issuers)
            raise TLSError(f"{source}: certificate {number} is not an {names} CA")
    return blocks


def refresh(
    output: Path = DATA,
    rds_url: str = RDS_URL,
    ats_urls: tuple[str, ...] = ATS_URLS,
    cafile: str | None = None,
) -> dict[str, dict[str, object]]:
    """Download, check and write the bundles and their provenance; return the provenance."""
    context = ssl.create_default_context(cafile=cafile)
    rds = check_bundle(_download(rds_url, context), rds_url, RDS_ISSUERS, MIN_RDS_CERTS)
    ats = [
        block
        for url in ats_urls
        for block in check_bundle(_download(url, context), url, ATS_ISSUERS)
    ]
    rds_pem = b"\n".join(rds) + b"\n"
    proxy_pem = rds_pem + b"\n".join(ats) + b"\n"
    provenance = {
        "rds-ca-bundle.pem": _describe(rds_pem, len(rds), [rds_url]),
        "rds-proxy-bundle.pem": _describe(proxy_pem, len(rds) + len(ats), [rds_url, *ats_urls]),
    }
    output.mkdir(parents=True, exist_ok=True)
    for name, data in (
        ("rds-ca-bundle.pem", rds_pem),
        ("rds-proxy-bundle.pem", proxy_pem),
        ("PROVENANCE.json", json.dumps(provenance, indent=2).encode() + b"\n"),
    ):
        tmp = output / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(output / name)
    return provenance


def _download(url: str, context: ssl.SSLContext) -> bytes:
    if not url.startswith("https://"):
        raise TLSError(f"refusing to download a trust store over {url.split(':')[0]}: {url}")
    try:
        with urllib.request.urlopen(url, timeout=30, context=context) as response:  # noqa: S310
            data: bytes = response.read(MAX_DOWNLOAD + 1)
    except OSError as exc:
        raise TLSError(f"{url}: download failed: {exc}") from exc
    if len(data) > MAX_DOWNLOAD:
        raise TLSError(f"{url}: larger than {MAX_DOWNLOAD} bytes")
    return data


def _describe(pem: bytes, count: int, sources: list[str]) -> dict[str, object]:
    return {
        "sources": sources,
        "retrieved": datetime.date.today().isoformat(),
        "sha256": hashlib.sha256(pem).hexdigest(),
        "certificates": count,
    }
