"""The bundled CA snapshot: inspect a trust store, check a download, refresh the bundle.

`inspect` reports, for a PEM bundle, every certificate, its expiry and the AWS region its
subject names; ``securedb ca check`` prints that report. A maintainer runs ``securedb ca
refresh`` to replace ``data/rds-ca-bundle.pem`` with AWS's current ``global-bundle.pem``
and rebuild ``data/rds-proxy-bundle.pem`` (RDS CAs plus the Amazon Trust Services roots).
Downloads go over verified HTTPS and never follow a redirect off https; every
certificate is parsed and must be a CA with an Amazon RDS (or, for the proxy roots, an
Amazon / Starfield) subject; nothing is written unless every file passes, and then all
three files appear at once (see `refresh`), readable by everyone like the rest of an
installed package.

A subject is only a claim: anyone can make a self-signed root named "Amazon RDS ...". So
from a source other than AWS's official URLs (a mirror), a root that the bundle being
replaced does not hold yet is refused unless the maintainer accepts it explicitly
(``--accept-new-roots``), having checked the subject and sha256 fingerprint listed.

Parsing needs the ``cryptography`` package: ``pip install 'securedb[ca]'``.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import json
import os
import re
import shutil
import ssl
import tempfile
import urllib.request
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, TypedDict
from urllib.parse import urlsplit

from securedb.errors import TLSError

if TYPE_CHECKING:
    from http.client import HTTPMessage

    from cryptography import x509

__all__ = [
    "ATS_URLS",
    "FILES",
    "RDS_URL",
    "BundleReport",
    "CertificateReport",
    "NewRoot",
    "RegionReport",
    "check_bundle",
    "describe_root",
    "inspect",
    "refresh",
]

RDS_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


def user_directory() -> Path:
    """Where `refresh` writes by default: the user's data directory, never the package.

    ``$XDG_DATA_HOME/securedb/ca``, else ``~/.local/share/securedb/ca``. An application
    must not rewrite its installed files (root, the next install undoes it, hash-checked
    deployments break); ``ca_bundle=`` or ``SECUREDB_CA_BUNDLE`` points at the new bundle.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "securedb" / "ca"


ATS_URLS = tuple(
    f"https://www.amazontrust.com/repository/{name}.pem"
    for name in ("AmazonRootCA1", "AmazonRootCA2", "AmazonRootCA3", "AmazonRootCA4", "SFSRootCAG2")
)
OFFICIAL_URLS = frozenset((RDS_URL, *ATS_URLS))
FILES = ("rds-ca-bundle.pem", "rds-proxy-bundle.pem", "PROVENANCE.json")
DIRECTORY_MODE, FILE_MODE = 0o755, 0o644  # an installed package's: every user reads them
MIN_RDS_CERTS = 10
MAX_DOWNLOAD = 4 * 1024 * 1024
RDS_ORGANIZATION = "Amazon Web Services, Inc."
RDS_UNIT = "Amazon RDS"
# (organization, common name) of the Amazon Trust Services roots RDS Proxy chains to.
ATS_SUBJECTS = frozenset(
    [("Amazon", f"Amazon Root CA {n}") for n in range(1, 5)]
    + [("Starfield Technologies, Inc.", "Starfield Services Root Certificate Authority - G2")]
)
PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
# "Amazon RDS eu-west-2 Root CA RSA2048 G1" names eu-west-2; "Amazon RDS Beta ..." no region.
REGION = re.compile(r"^Amazon RDS ([a-z]+(?:-[a-z]+)+-\d+) ")
Kind = Literal["rds", "ats"]


class CertificateReport(TypedDict):
    subject: str
    not_after: str
    expired: bool
    region: str | None


class RegionReport(TypedDict):
    valid: int
    expired: int


class BundleReport(TypedDict):
    certificates: list[CertificateReport]
    regions: dict[str, RegionReport]
    partitions: list[str]
    ok: bool


class NewRoot(TypedDict):
    """A certificate from a source other than AWS's official URLs, new to the bundle."""

    subject: str  # RFC 4514
    sha256: str  # of the DER encoding, hex
    source: str  # the URL it was downloaded from


def inspect(pem: bytes, now: datetime.datetime, source: str = "bundle") -> BundleReport:
    """Report every certificate of `pem` and which AWS regions have a CA valid at `now`.

    `now` must be timezone-aware. A certificate counts as valid for its region between its
    not-before and not-after dates; ``ok`` is false when a region named in the bundle has
    no valid CA (``securedb ca check`` then exits 1).

    Raises:
        TLSError: `pem` holds no certificate, a block that does not parse, or other text.
        ImportError: the ``cryptography`` package is missing.
    """
    certificates: list[CertificateReport] = []
    regions: dict[str, RegionReport] = {}
    for cert in _load(pem, source):
        entry = _report(cert, now)
        certificates.append(entry)
        if entry["region"] is not None:
            counts = regions.setdefault(entry["region"], {"valid": 0, "expired": 0})
            if _valid(cert, now):
                counts["valid"] += 1
            elif entry["expired"]:
                counts["expired"] += 1
    partitions = sorted({_partition(r) for r, counts in regions.items() if counts["valid"]})
    ok = all(counts["valid"] for counts in regions.values())
    return {"certificates": certificates, "regions": regions, "partitions": partitions, "ok": ok}


def check_bundle(pem: bytes, source: str, kind: Kind, minimum: int = 1) -> list[bytes]:
    """The certificates of `pem` as PEM blocks, each checked, or a TLSError saying what is wrong.

    Every block must parse and be a CA (basicConstraints CA:TRUE). For ``kind="rds"`` the
    subject must be O="Amazon Web Services, Inc.", OU="Amazon RDS", CN="Amazon RDS ..." and
    the certificate self-signed or signed by another certificate of the bundle; for
    ``kind="ats"`` it must be one of the Amazon Root CA 1-4 / Starfield Services Root CA G2
    subjects, self-signed. There must be at least `minimum` certificates and no other text.

    Raises:
        TLSError: the bundle breaks one of these rules.
        ImportError: the ``cryptography`` package is missing.
    """
    certs = _load(pem, source)
    if len(certs) < minimum:
        raise TLSError(f"{source}: {len(certs)} certificates, expected at least {minimum}")
    for number, cert in enumerate(certs, 1):
        problem = _problem(cert, certs, kind)
        if problem:
            raise TLSError(
                f"{source}: certificate {number} ({_common_name(cert)}) {problem}; "
                "check the URL points at AWS's trust store"
            )
    return [_pem(cert) for cert in certs]


def refresh(
    output: Path | None = None,
    rds_url: str = RDS_URL,
    ats_urls: tuple[str, ...] = ATS_URLS,
    cafile: str | None = None,
    accept_new_roots: bool = False,
) -> dict[str, dict[str, object]]:
    """Download, check and write the bundles and their provenance; return the provenance.

    The RDS certificates are sorted by subject CN; the proxy bundle is the RDS bundle
    followed by the Amazon Trust Services roots. `output` (default: `user_directory()`;
    the installed package is never written unless named) is a directory holding exactly
    `FILES`, replaced as a whole: the three files are written and fsynced into a new
    directory ``.<name>.new-*`` beside `output`; then `output` is renamed into a fresh
    ``.<name>.old-*`` directory, the new one is renamed to `output` (on failure the old
    one is renamed back) and the old one is deleted. A reader sees the old three files,
    for an instant no directory, or the new three files, never a mix; a failure before
    the swap leaves `output` untouched. The directory is mode 0755, its files 0644.

    A certificate downloaded from a URL other than AWS's (`OFFICIAL_URLS`) that the
    bundles at `output` do not hold yet is a new root: refused unless `accept_new_roots`,
    then listed (`NewRoot`) under ``accepted_new_roots`` in the provenance of each file
    that holds it.

    Raises:
        TLSError: a URL is not https, a download fails or is redirected off https, a
            bundle breaks `check_bundle`'s rules, a new root is not accepted, `output`
            holds other files, or writing fails.
    """
    output = user_directory() if output is None else output
    opener = _opener(ssl.create_default_context(cafile=cafile))
    downloads = {url: _download(opener, url) for url in (rds_url, *ats_urls)}
    rds = check_bundle(downloads[rds_url], rds_url, "rds", MIN_RDS_CERTS)
    ats = {url: check_bundle(downloads[url], url, "ats") for url in ats_urls}
    new = _new_roots({rds_url: rds, **ats}, output)
    if new and not accept_new_roots:
        raise TLSError(_refusal(new))
    roots = [block for blocks in ats.values() for block in blocks]
    ordered = sorted(rds, key=_sort_key)
    rds_pem = b"".join(ordered)
    proxy_pem = rds_pem + b"".join(roots)
    sources = {url: {"sha256": hashlib.sha256(data).hexdigest()} for url, data in downloads.items()}
    provenance: dict[str, dict[str, object]] = {
        FILES[0]: _describe(rds_pem, len(rds), {rds_url: sources[rds_url]}),
        FILES[1]: _describe(proxy_pem, len(rds) + len(roots), sources),
    }
    for name, held in ((FILES[0], [r for r in new if r["source"] == rds_url]), (FILES[1], new)):
        if held:
            provenance[name]["accepted_new_roots"] = held
    document = json.dumps(provenance, indent=2).encode() + b"\n"
    _replace_directory(output, dict(zip(FILES, (rds_pem, proxy_pem, document), strict=True)))
    return provenance


def describe_root(root: NewRoot) -> str:
    """``SUBJECT sha256 HEX from URL``: what a maintainer checks before accepting a root."""
    return f"{root['subject']} sha256 {root['sha256']} from {root['source']}"


def _new_roots(checked: dict[str, list[bytes]], output: Path) -> list[NewRoot]:
    """The certificates from sources other than AWS's URLs that `output`'s bundles lack."""
    mirrored = {url: blocks for url, blocks in checked.items() if url not in OFFICIAL_URLS}
    if not mirrored:
        return []
    known: set[str] = set()
    for path in (output / FILES[0], output / FILES[1]):
        if path.is_file():
            known.update(_fingerprint(cert) for cert in _load(path.read_bytes(), str(path)))
    new: list[NewRoot] = []
    for url, blocks in mirrored.items():
        for cert in (_load(block, url)[0] for block in blocks):
            sha256 = _fingerprint(cert)
            if sha256 not in known:
                new.append(
                    {"subject": cert.subject.rfc4514_string(), "sha256": sha256, "source": url}
                )
    return new


def _refusal(new: list[NewRoot]) -> str:
    count = f"{len(new)} new root{'s' if len(new) > 1 else ''}"
    return (
        f"refusing {count} from a source that is not AWS's official URL, not in the bundle "
        f"being replaced: {'; '.join(describe_root(root) for root in new)}; check each "
        "fingerprint against AWS's documentation, then run again with --accept-new-roots"
    )


def _fingerprint(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _load(pem: bytes, source: str) -> list[x509.Certificate]:
    if importlib.util.find_spec("cryptography") is None:
        raise ImportError("securedb ca needs the cryptography package: pip install 'securedb[ca]'")
    from cryptography import x509
    from cryptography.utils import CryptographyDeprecationWarning

    blocks = PEM_BLOCK.findall(pem)
    if not blocks:
        raise TLSError(f"{source}: 0 certificates; expected a PEM bundle")
    if PEM_BLOCK.sub(b"", pem).strip():
        raise TLSError(
            f"{source}: text outside the PEM certificate blocks; expected only certificates"
        )
    certs = []
    for number, block in enumerate(blocks, 1):
        try:
            with warnings.catch_warnings():
                # Starfield Services Root CA G2 has serial number 0, which cryptography warns about.
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                certs.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            raise TLSError(f"{source}: certificate {number} does not parse") from None
    return certs


def _problem(cert: x509.Certificate, bundle: Sequence[x509.Certificate], kind: Kind) -> str:
    from cryptography import x509

    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        return "is not a CA (no basicConstraints CA:TRUE)"
    if kind == "ats":
        subject = (_attribute(cert.subject, "O"), _common_name(cert))
        if subject not in ATS_SUBJECTS or not _signed_by(cert, cert):
            return "is not a self-signed Amazon Trust Services root"
        return ""
    if not _is_rds_name(cert.subject):
        return f"has subject {cert.subject.rfc4514_string()}, not an Amazon RDS CA"
    if not any(_signed_by(cert, issuer) for issuer in bundle):
        return "is neither self-signed nor signed by another CA of the bundle"
    return ""


def _is_rds_name(name: x509.Name) -> bool:
    return (
        _attribute(name, "O") == RDS_ORGANIZATION
        and _attribute(name, "OU") == RDS_UNIT
        and _attribute(name, "CN").startswith("Amazon RDS ")
    )


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature

    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _attribute(name: x509.Name, short: str) -> str:
    values = [a.value for a in name if a.rfc4514_attribute_name == short]
    return str(values[0]) if len(values) == 1 else ""


def _common_name(cert: x509.Certificate) -> str:
    return _attribute(cert.subject, "CN") or cert.subject.rfc4514_string()


def _report(cert: x509.Certificate, now: datetime.datetime) -> CertificateReport:
    subject = _common_name(cert)
    match = REGION.match(subject)
    return {
        "subject": subject,
        "not_after": cert.not_valid_after_utc.isoformat(),
        "expired": now > cert.not_valid_after_utc,
        "region": match.group(1) if match else None,
    }


def _valid(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM)


def _sort_key(block: bytes) -> tuple[str, bytes]:
    return (_common_name(_load(block, "sort")[0]), block)


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another https URL; anything else is a TLSError."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme != "https":
            fp.close()
            raise TLSError(
                f"{req.full_url}: refusing a redirect to {newurl}: trust stores are only "
                "downloaded over https; use an https mirror"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(context: ssl.SSLContext) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), _HttpsOnlyRedirects()
    )


def _download(opener: urllib.request.OpenerDirector, url: str) -> bytes:
    scheme = urlsplit(url).scheme
    if scheme != "https":
        raise TLSError(f"refusing to download a trust store over {scheme or 'no scheme'}: {url}")
    try:
        with opener.open(url, timeout=30) as response:
            data: bytes = response.read(MAX_DOWNLOAD + 1)
    except OSError as exc:
        raise TLSError(f"{url}: download failed: {exc}; check the URL and --cafile") from exc
    if len(data) > MAX_DOWNLOAD:
        raise TLSError(f"{url}: larger than {MAX_DOWNLOAD} bytes; not a trust store")
    return data


def _describe(pem: bytes, count: int, sources: dict[str, dict[str, str]]) -> dict[str, object]:
    return {
        "sources": sources,
        "retrieved": datetime.date.today().isoformat(),
        "sha256": hashlib.sha256(pem).hexdigest(),
        "certificates": count,
    }


def _replace_directory(output: Path, files: dict[str, bytes]) -> None:
    extra = (
        sorted(p.name for p in output.iterdir() if p.name not in FILES) if output.is_dir() else []
    )
    if extra or (output.exists() and not output.is_dir()):
        raise TLSError(
            f"refusing to replace {output}: it holds {', '.join(extra) or 'a file'}, not only "
            f"{', '.join(FILES)}; pass --output with a directory of its own"
        )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.new-", dir=output.parent))
        try:
            staging.chmod(DIRECTORY_MODE)  # mkdtemp makes it 0700
            for name, data in files.items():
                _write_file(staging / name, data)
            _fsync(staging)
            _swap(staging, output)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise TLSError(
            f"cannot write the CA bundle to {output}: {exc}; check it is writable"
        ) from exc


def _swap(staging: Path, output: Path) -> None:
    if not output.exists():
        staging.rename(output)
        _fsync(output.parent)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
    old = trash / output.name
    try:
        output.rename(old)
        staging.rename(output)
    except OSError:
        if old.exists():
            old.rename(output)
        trash.rmdir()
        raise
    _fsync(output.parent)
    shutil.rmtree(trash)


def _write_file(path: Path, data: bytes) -> None:
    with path.open("xb") as file:
        os.fchmod(file.fileno(), FILE_MODE)  # whatever the umask
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
