"""The bundled RDS CA snapshot, `securedb ca check`, and the maintainer's `securedb ca refresh`."""

from __future__ import annotations

import datetime
import functools
import hashlib
import http.server
import json
import os
import re
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

import securedb
from bed import certs
from bed.bed import Bed
from securedb import ca, cli, errors, tls
from tests import fakes

RDS_SNAPSHOT_SHA256 = "0eecddd9cca74c1dc9fa95c2f6df508209b068cfd150976e15a21c0cf59f69bc"
PROXY_SNAPSHOT_SHA256 = "aa7cadf582b94883388772317d459308cd268ae9552bd6c6017be0d8c0a1b60f"
TODAY = datetime.datetime(2026, 11, 29, tzinfo=datetime.timezone.utc)
AWS = "Amazon Web Services, Inc."
DAY = datetime.timedelta(days=1)


def make_ca(
    cn: str,
    org: str = AWS,
    unit: str | None = "Amazon RDS",
    *,
    is_ca: bool = True,
    not_after: datetime.datetime = TODAY + 3650 * DAY,
) -> bytes:
    """A self-signed certificate (PEM) with the given subject, made here for the test."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if unit is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    name = x509.Name(attributes)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - 7300 * DAY)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


def rds_bundle(count: int = 12) -> bytes:
    return b"".join(make_ca(f"Amazon RDS eu-west-{n} Root CA ECC256 test") for n in range(count))


# The bundled snapshot.


def test_bundled_snapshot_matches_its_provenance() -> None:
    provenance = json.loads((tls.DATA / "PROVENANCE.json").read_text())
    assert sorted(provenance) == ["rds-ca-bundle.pem", "rds-proxy-bundle.pem"]
    for name, facts in provenance.items():
        data = (tls.DATA / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == facts["sha256"]
        assert data.count(b"-----BEGIN CERTIFICATE-----") == facts["certificates"]
    rds = tls.RDS_BUNDLE.read_bytes()
    proxy = tls.PROXY_BUNDLE.read_bytes()
    assert hashlib.sha256(rds).hexdigest() == RDS_SNAPSHOT_SHA256
    assert hashlib.sha256(proxy).hexdigest() == PROXY_SNAPSHOT_SHA256
    assert proxy.startswith(rds)
    assert len(ca.check_bundle(proxy[len(rds) :], "proxy roots", "ats")) == 5
    assert (
        ssl.create_default_context(cafile=str(tls.PROXY_BUNDLE)).cert_store_stats()["x509_ca"]
        == len(ca.check_bundle(rds, "bundled", "rds")) + 5
    )


def test_bundled_certificates_are_rds_roots_sorted_and_sourced_three_times() -> None:
    rds = tls.RDS_BUNDLE.read_bytes()
    blocks = ca.check_bundle(rds, "bundled", "rds", ca.MIN_RDS_CERTS)
    assert b"".join(blocks) == rds  # nothing but PEM blocks, byte for byte
    certs = [x509.load_pem_x509_certificate(block) for block in blocks]
    names = [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in certs]
    assert names == sorted(names)
    for cert in certs:
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert cert.issuer == cert.subject
        cert.verify_directly_issued_by(cert)
        assert cert.not_valid_before_utc <= TODAY <= cert.not_valid_after_utc
    facts = json.loads((tls.DATA / "PROVENANCE.json").read_text())["rds-ca-bundle.pem"]
    listed = {entry["sha256"]: entry for entry in facts["contents"]}
    assert sorted(listed) == sorted(
        hashlib.sha256(c.public_bytes(Encoding.DER)).hexdigest() for c in certs
    )
    for entry in listed.values():
        assert len(set(entry["sources"])) >= 3
        assert set(entry["sources"]) <= set(facts["sources"])


def test_check_reports_the_bundled_bundle_covers_the_regions() -> None:
    report = ca.inspect(tls.RDS_BUNDLE.read_bytes(), TODAY)
    assert report["ok"]
    assert report["partitions"] == ["aws"]
    for region in ("us-east-1", "eu-west-2", "ca-west-1", "ap-southeast-5", "mx-central-1"):
        assert report["regions"][region] == {"valid": 3, "expired": 0}
    assert not any(cert["expired"] for cert in report["certificates"])
    beta = [c for c in report["certificates"] if c["subject"].startswith("Amazon RDS Beta")]
    assert beta
    assert all(c["region"] is None for c in beta)


def test_check_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    """The command reads the bundled snapshot on the real clock, so its verdict is whatever
    the snapshot's age makes it that day; the exit code must agree with it."""
    code = cli.main(["ca", "check", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert sorted(report) == ["certificates", "ok", "partitions", "regions"]
    first = report["certificates"][0]
    assert sorted(first) == ["expired", "not_after", "region", "subject"]
    datetime.datetime.fromisoformat(first["not_after"])
    assert code == (0 if report["ok"] else 1)
    assert sum(report["regions"]["us-east-1"].values()) == 3


def test_check_command_passes_a_bundle_valid_today(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(make_ca("Amazon RDS us-east-1 Root CA test", not_after=now + DAY))
    assert cli.main(["ca", "check", "--json", "--bundle", str(bundle)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["regions"] == {"us-east-1": {"valid": 1, "expired": 0}}


def test_check_reports_an_expired_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expired = make_ca("Amazon RDS ap-south-9 Root CA test", not_after=TODAY - DAY)
    fresh = make_ca("Amazon RDS us-east-1 Root CA test")
    report = ca.inspect(expired + fresh, TODAY)
    assert not report["ok"]
    assert report["regions"] == {
        "ap-south-9": {"valid": 0, "expired": 1},
        "us-east-1": {"valid": 1, "expired": 0},
    }
    assert [c["expired"] for c in report["certificates"]] == [True, False]
    assert ca.inspect(expired + fresh + make_ca("Amazon RDS ap-south-9 Root CA 2"), TODAY)["ok"]
    # The command asks on the real clock, so its bundle is made on it.
    now = datetime.datetime.now(datetime.timezone.utc)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(
        make_ca("Amazon RDS ap-south-9 Root CA test", not_after=now - DAY)
        + make_ca("Amazon RDS us-east-1 Root CA test", not_after=now + DAY)
    )
    assert cli.main(["ca", "check", "--bundle", str(bundle)]) == 1
    out = capsys.readouterr().out
    assert "EXPIRED  Amazon RDS ap-south-9 Root CA test" in out
    assert "regions without a valid CA: ap-south-9" in out


def test_check_names_partitions() -> None:
    bundle = b"".join(
        make_ca(f"Amazon RDS {region} Root CA test")
        for region in ("cn-north-1", "us-gov-west-1", "eu-west-1")
    )
    assert ca.inspect(bundle, TODAY)["partitions"] == ["aws", "aws-cn", "aws-us-gov"]


@pytest.mark.parametrize(
    ("pem", "match"),
    [
        (b"", "0 certificates"),
        (b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", "does not parse"),
        (b"<html>captive portal</html>", "0 certificates"),
        (make_ca("Amazon RDS eu-west-1 Root CA") + b"#!/bin/sh\n", "outside"),
        (make_ca("Amazon RDS eu-west-1 Root CA", is_ca=False), "is not a CA"),
        (make_ca("Amazon RDS eu-west-1 Root CA", org="Amazon RDS test"), "not an Amazon RDS CA"),
        (make_ca("Amazon RDS eu-west-1 Root CA", unit="RDS"), "not an Amazon RDS CA"),
        (make_ca("Evil Root CA"), "not an Amazon RDS CA"),
        (trustme.CA(organization_name="Amazon RDS").cert_pem.bytes(), "not an Amazon RDS CA"),
    ],
)
def test_check_bundle_rejects(pem: bytes, match: str) -> None:
    with pytest.raises(errors.TLSError, match=match):
        ca.check_bundle(pem, "download", "rds")


def test_check_bundle_wants_a_signature_from_the_bundle() -> None:
    root = trustme.CA()
    forged = x509.load_pem_x509_certificate(make_ca("Amazon RDS eu-west-1 Root CA"))
    key = ec.generate_private_key(ec.SECP256R1())
    issued = (  # an RDS subject, issued by a CA that is not in the bundle
        x509.CertificateBuilder()
        .subject_name(forged.subject)
        .issuer_name(x509.load_pem_x509_certificate(root.cert_pem.bytes()).subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(TODAY - DAY)
        .not_valid_after(TODAY + DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(errors.TLSError, match="neither self-signed nor signed by another CA"):
        ca.check_bundle(issued.public_bytes(Encoding.PEM), "download", "rds")
    with pytest.raises(errors.TLSError, match="not a self-signed Amazon Trust Services root"):
        ca.check_bundle(make_ca("Amazon Root CA 9", org="Amazon", unit=None), "root", "ats")
    assert ca.check_bundle(make_ca("Amazon Root CA 1", org="Amazon", unit=None), "root", "ats")


def test_bundled_roots_parse_and_cover_the_regions_they_claim() -> None:
    """Every bundled root loads as a trust anchor, and the regions PROVENANCE.json lists
    are exactly those `securedb ca check` finds covered, each by every root it lists."""
    rds = tls.RDS_BUNDLE.read_bytes()
    facts = json.loads((tls.DATA / "PROVENANCE.json").read_text())["rds-ca-bundle.pem"]
    context = ssl.create_default_context(cafile=str(tls.RDS_BUNDLE))
    assert context.cert_store_stats()["x509_ca"] == facts["certificates"] == len(facts["contents"])
    claimed: dict[str, int] = {}
    for entry in facts["contents"]:
        # "Amazon RDS eu-west-2 Root CA RSA2048 G1"; "Amazon RDS Beta ..." names no region
        region = re.match(r"Amazon RDS ([a-z]{2}(?:-[a-z]+)+-\d+) Root CA ", entry["subject"])
        if region:
            claimed[region.group(1)] = claimed.get(region.group(1), 0) + 1
    report = ca.inspect(rds, TODAY)
    assert report["ok"]
    assert report["regions"] == {r: {"valid": n, "expired": 0} for r, n in claimed.items()}
    assert len(claimed) >= 30
    assert all(n == 3 for n in claimed.values())  # RSA2048, RSA4096 and ECC384 G1
    by_subject = {c["subject"]: c for c in report["certificates"]}
    for entry in facts["contents"]:
        assert by_subject[entry["subject"]]["not_after"][:10] == entry["not_after"]


@pytest.fixture
def rds_like(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> certs.RdsLikeChain:
    """An RDS-like chain for the bed's RDS names, its root added to a copy of the bundled
    RDS roots, and that copy made securedb's default trust store."""
    # The chain is checked by TLS on the real clock, so it is made and inspected on it too.
    now = datetime.datetime.now(datetime.timezone.utc)
    chain = certs.make_rds_like_chain(
        tmp_path / "rds-like", certs.PG_INSTANCE, certs.MYSQL_INSTANCE, now=now
    )
    bundled = tls.RDS_BUNDLE.read_bytes()
    bundle = bundled + chain.root.read_bytes()
    # Shaped like the snapshot: `securedb ca refresh` would write it as it is.
    ca.check_bundle(bundle, "bundle with the bed's root", "rds", ca.MIN_RDS_CERTS)
    # One more valid root for the region than the snapshot has that day, whatever its age.
    before = ca.inspect(bundled, now)["regions"][certs.REGION]
    after = ca.inspect(bundle, now)["regions"][certs.REGION]
    assert after == {**before, "valid": before["valid"] + 1}
    (tmp_path / "bundle.pem").write_bytes(bundle)
    monkeypatch.setattr(tls, "RDS_BUNDLE", tmp_path / "bundle.pem")
    return chain


RELAYS = {
    "postgresql": (fakes.pg_tls_relay, certs.PG_INSTANCE, 5432),
    "mysql": (fakes.mysql_tls_relay, certs.MYSQL_INSTANCE, 3306),
}


def connect_through(bed: Bed, engine: str, chain: Path, key: Path) -> str:
    """Log in by the RDS name with an IAM token and the default trust store, through a
    relay presenting `chain` (the token's password needs no channel binding to the
    server's own certificate, which a relay could not give)."""
    relay, name, port = RELAYS[engine]
    target = bed.primary.port if engine == "postgresql" else bed.mariadb.port
    handler = relay(str(chain), str(key), ("127.0.0.1", target), str(bed.pki.ca))
    with fakes.FakeServer(handler) as front:
        conn = securedb.connect(
            f"{engine}://iam_user@{name}:{port}/app",
            auth="iam",
            tunnel=f"127.0.0.1:{front.port}",
        )
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT current_user" if engine == "postgresql" else "SELECT USER()")
            return str(cursor.fetchone()[0])
        finally:
            conn.close()


@pytest.mark.bed
@pytest.mark.parametrize("engine", sorted(RELAYS))
def test_default_trust_store_validates_an_rds_chain(
    bed: Bed, aws_env: dict[str, str], rds_like: certs.RdsLikeChain, engine: str
) -> None:
    """Root in the bundle, intermediate from the server, leaf for the endpoint: verify-full
    passes with securedb's defaults, as with a real RDS server."""
    user = connect_through(bed, engine, rds_like.chain, rds_like.key)
    assert user.split("@")[0] == "iam_user"


@pytest.mark.bed
@pytest.mark.parametrize("engine", sorted(RELAYS))
def test_rds_chain_is_refused_without_its_root_or_intermediate(
    bed: Bed,
    aws_env: dict[str, str],
    rds_like: certs.RdsLikeChain,
    engine: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same server without the intermediate, or the bundle without the root: refused.
    So the chain that passes above is checked link by link, up to the bundle."""
    with pytest.raises(errors.TLSError, match="not trusted"):
        connect_through(bed, engine, rds_like.leaf_only, rds_like.key)
    monkeypatch.setattr(tls, "RDS_BUNDLE", tls.DATA / "rds-ca-bundle.pem")  # the snapshot
    with pytest.raises(errors.TLSError, match="not trusted"):
        connect_through(bed, engine, rds_like.chain, rds_like.key)


# `securedb ca refresh` against a local HTTPS server.


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files, and answers a path of `server.redirects` with a 302 to its target."""

    def do_GET(self) -> None:
        target = self.server.redirects.get(self.path)  # type: ignore[attr-defined]
        if target is None:
            super().do_GET()
            return
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """A local HTTPS server for `tmp_path/www`, its certificate from a test CA in
    `tmp_path/download-ca.pem`; the dict maps a path to the URL it redirects to."""
    authority = trustme.CA()
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_Handler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.redirects = {}  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    authority.cert_pem.write_to_path(tmp_path / "download-ca.pem")
    yield f"https://127.0.0.1:{server.server_address[1]}", www, server.redirects  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join()


def refresh_args(
    base: str,
    tmp_path: Path,
    out: Path,
    rds_path: str = "/global-bundle.pem",
    *,
    accept_new_roots: bool = True,
) -> list[str]:
    """A refresh from the local server: a mirror, so its roots new to `out` need the flag."""
    return [
        "ca",
        "refresh",
        "--output",
        str(out),
        "--rds-url",
        f"{base}{rds_path}",
        "--ats-url",
        f"{base}/AmazonRootCA1.pem",
        *(["--accept-new-roots"] if accept_new_roots else []),
        "--cafile",
        str(tmp_path / "download-ca.pem"),
    ]


def serve_good_bundles(www: Path) -> bytes:
    rds = rds_bundle()
    (www / "global-bundle.pem").write_bytes(rds)
    (www / "AmazonRootCA1.pem").write_bytes(make_ca("Amazon Root CA 1", org="Amazon", unit=None))
    return rds


def test_refresh_from_a_local_https_server_follows_https_redirects(
    https_server: tuple[str, Path, dict[str, str]], tmp_path: Path
) -> None:
    base, www, redirects = https_server
    served = serve_good_bundles(www)
    redirects["/moved.pem"] = f"{base}/global-bundle.pem"
    out = tmp_path / "data"
    assert cli.main(refresh_args(base, tmp_path, out, "/moved.pem")) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(ca.FILES)
    provenance = json.loads((out / "PROVENANCE.json").read_text())
    assert provenance["rds-ca-bundle.pem"]["certificates"] == 12
    assert provenance["rds-proxy-bundle.pem"]["certificates"] == 13
    rds = (out / "rds-ca-bundle.pem").read_bytes()
    assert hashlib.sha256(rds).hexdigest() == provenance["rds-ca-bundle.pem"]["sha256"]
    assert sorted(ca.check_bundle(rds, "written", "rds")) == sorted(
        ca.check_bundle(served, "served", "rds")
    )
    sources = provenance["rds-ca-bundle.pem"]["sources"]
    assert sources == {f"{base}/moved.pem": {"sha256": hashlib.sha256(served).hexdigest()}}
    assert (out / "rds-proxy-bundle.pem").read_bytes().startswith(rds)


def test_refresh_refuses_a_redirect_to_http(
    https_server: tuple[str, Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, www, redirects = https_server
    serve_good_bundles(www)
    plain = f"http://127.0.0.1:{base.rsplit(':', 1)[1]}/global-bundle.pem"
    redirects["/global-bundle.pem"] = plain
    out = tmp_path / "data"
    assert cli.main(refresh_args(base, tmp_path, out)) == 1
    err = capsys.readouterr().err
    assert f"refusing a redirect to {plain}" in err
    assert "only downloaded over https" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("served", "match"),
    [
        (rds_bundle(11) + make_ca("Amazon RDS us-east-1 CA", is_ca=False), "is not a CA"),
        (
            rds_bundle(11) + make_ca("Amazon RDS us-east-1 CA", org="Someone Else"),
            "not an Amazon RDS",
        ),
        (rds_bundle(9), "9 certificates, expected at least 10"),
        (b"<html>not a bundle</html>", "0 certificates"),
    ],
)
def test_refresh_refuses_bad_bundles_and_keeps_the_old_files(
    https_server: tuple[str, Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    served: bytes,
    match: str,
) -> None:
    base, www, _ = https_server
    serve_good_bundles(www)
    out = tmp_path / "data"
    assert cli.main(refresh_args(base, tmp_path, out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (www / "global-bundle.pem").write_bytes(served)
    assert cli.main(refresh_args(base, tmp_path, out)) == 1
    assert match in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_refresh_refuses_untrusted_servers_and_plain_http(
    https_server: tuple[str, Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, www, _ = https_server
    serve_good_bundles(www)
    out = tmp_path / "data"
    assert cli.main(refresh_args(base, tmp_path, out)[:-2]) == 1  # without --cafile
    assert "download failed" in capsys.readouterr().err
    assert not out.exists()


class _Recording(http.server.SimpleHTTPRequestHandler):
    """Serves files over plain HTTP and notes every path asked for."""

    def do_GET(self) -> None:
        self.server.asked.append(self.path)  # type: ignore[attr-defined]
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("plain", ["--rds-url", "--ats-url"])
def test_refresh_never_downloads_over_plain_http(
    https_server: tuple[str, Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    plain: str,
) -> None:
    """The same good bundles over plain HTTP: refused for the scheme alone, nothing fetched."""
    base, www, _ = https_server
    serve_good_bundles(www)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Recording, directory=str(www))
    )
    server.asked = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    args = refresh_args(base, tmp_path, tmp_path / "data")
    https_url = args[args.index(plain) + 1]
    http_url = https_url.replace(base, f"http://127.0.0.1:{server.server_address[1]}")
    args[args.index(plain) + 1] = http_url
    try:
        assert cli.main(args) == 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert f"refusing to download a trust store over http: {http_url}" in capsys.readouterr().err
    assert server.asked == []  # type: ignore[attr-defined]
    assert not (tmp_path / "data").exists()


def test_refresh_swaps_the_directory_in_whole(
    https_server: tuple[str, Path, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, www, _ = https_server
    serve_good_bundles(www)
    out = tmp_path / "data"
    assert cli.main(refresh_args(base, tmp_path, out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    inode = out.stat().st_ino
    serve_good_bundles(www)  # new keys: every file changes

    real_write = ca._write_file

    def fail_on_provenance(path: Path, data: bytes) -> None:
        if path.name == "PROVENANCE.json":
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(ca, "_write_file", fail_on_provenance)
    assert cli.main(refresh_args(base, tmp_path, out)) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert out.stat().st_ino == inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "download-ca.pem", "www"]

    monkeypatch.setattr(ca, "_write_file", real_write)
    assert cli.main(refresh_args(base, tmp_path, out)) == 0
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(after) == sorted(before)
    assert all(after[name] != before[name] for name in ca.FILES)
    assert out.stat().st_ino != inode  # a new directory was renamed in, not files rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "download-ca.pem", "www"]


def test_refresh_refuses_a_directory_with_other_files(
    https_server: tuple[str, Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, www, _ = https_server
    serve_good_bundles(www)
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert cli.main(refresh_args(base, tmp_path, out)) == 1
    assert "it holds notes.txt" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


# The written directory, and roots from a source that is not AWS's official URL.


@pytest.fixture
def from_aws(
    https_server: tuple[str, Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """`securedb ca refresh` arguments for AWS's official URLs, which the local server
    answers here: the URLs securedb sees are AWS's."""
    base, www, _ = https_server
    serve_good_bundles(www)
    local = {ca.RDS_URL: f"{base}/global-bundle.pem", ca.ATS_URLS[0]: f"{base}/AmazonRootCA1.pem"}
    download = ca._download
    monkeypatch.setattr(ca, "_download", lambda opener, url: download(opener, local.get(url, url)))
    out = tmp_path / "data"
    cafile = str(tmp_path / "download-ca.pem")
    return ["ca", "refresh", "--output", str(out), "--ats-url", ca.ATS_URLS[0], "--cafile", cafile]


def test_refresh_writes_a_directory_readable_like_an_installed_package(
    https_server: tuple[str, Path, dict[str, str]], from_aws: list[str], tmp_path: Path
) -> None:
    """0755 and 0644 whatever the umask: every user's process reads the package's trust store."""
    www, out = https_server[1], tmp_path / "data"
    umask = os.umask(0o077)
    try:
        for _ in range(2):  # a first write, then a replacement
            serve_good_bundles(www)
            assert cli.main(from_aws) == 0
            assert stat.S_IMODE(out.stat().st_mode) == 0o755
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
            assert modes == dict.fromkeys(ca.FILES, 0o644)
    finally:
        os.umask(umask)


def test_aws_official_urls_need_no_flag(
    from_aws: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """From AWS's own URLs, roots new to the directory are taken as before: no flag, none
    listed, none recorded."""
    assert cli.main(from_aws) == 0
    assert "new root" not in capsys.readouterr().out
    provenance = json.loads((tmp_path / "data" / "PROVENANCE.json").read_text())
    assert all("accepted_new_roots" not in facts for facts in provenance.values())
    assert list(provenance["rds-ca-bundle.pem"]["sources"]) == [ca.RDS_URL]


def fingerprint(pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    return hashlib.sha256(der).hexdigest()


CLAIMED_SUBJECT = (
    "CN=Amazon RDS us-east-1 Root CA RSA2048 G1,OU=Amazon RDS,O=Amazon Web Services\\, Inc."
)


def test_a_mirror_adding_a_root_is_refused_unless_accepted(
    https_server: tuple[str, Path, dict[str, str]],
    from_aws: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A self-signed root whose subject merely claims to be Amazon RDS, added by a mirror
    to the roots the bundle already holds: refused, named with its fingerprint; written
    only with --accept-new-roots, which lists it and records it in the provenance."""
    base, www, _ = https_server
    out = tmp_path / "data"
    assert cli.main(from_aws) == 0  # the bundle as AWS publishes it
    served = (www / "global-bundle.pem").read_bytes()
    assert cli.main(refresh_args(base, tmp_path, out, accept_new_roots=False)) == 0  # same roots
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    claimed = make_ca("Amazon RDS us-east-1 Root CA RSA2048 G1")
    (www / "global-bundle.pem").write_bytes(served + claimed)
    listed = f"{CLAIMED_SUBJECT} sha256 {fingerprint(claimed)} from {base}/global-bundle.pem"

    assert cli.main(refresh_args(base, tmp_path, out, accept_new_roots=False)) == 1
    err = capsys.readouterr().err
    assert "refusing 1 new root from a source that is not AWS's official URL" in err
    assert listed in err
    assert "--accept-new-roots" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    assert cli.main(refresh_args(base, tmp_path, out)) == 0
    assert f"new root accepted: {listed}" in capsys.readouterr().out
    assert claimed in (out / "rds-ca-bundle.pem").read_bytes()
    provenance = json.loads((out / "PROVENANCE.json").read_text())
    accepted = [
        {
            "subject": CLAIMED_SUBJECT,
            "sha256": fingerprint(claimed),
            "source": f"{base}/global-bundle.pem",
        }
    ]
    assert provenance["rds-ca-bundle.pem"]["accepted_new_roots"] == accepted
    assert provenance["rds-proxy-bundle.pem"]["accepted_new_roots"] == accepted


def test_a_mirror_into_an_empty_directory_is_all_new_roots(
    https_server: tuple[str, Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, www, _ = https_server
    serve_good_bundles(www)
    out = tmp_path / "data"
    assert cli.main(refresh_args(base, tmp_path, out, accept_new_roots=False)) == 1
    assert "refusing 13 new roots from a source" in capsys.readouterr().err
    assert not out.exists()


def test_a_mirror_of_a_proxy_root_is_checked_too(
    https_server: tuple[str, Path, dict[str, str]],
    from_aws: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The RDS roots from AWS, an Amazon Trust Services root from a mirror: a root of the
    mirror's that the proxy bundle does not hold yet is refused."""
    base, www, _ = https_server
    out = tmp_path / "data"
    assert cli.main(from_aws) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    (www / "AmazonRootCA1.pem").write_bytes(make_ca("Amazon Root CA 1", org="Amazon", unit=None))
    args = [*from_aws[:4], "--ats-url", f"{base}/AmazonRootCA1.pem", *from_aws[6:]]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "refusing 1 new root from a source that is not AWS's official URL" in err
    assert "CN=Amazon Root CA 1,O=Amazon sha256 " in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_refresh_writes_to_the_users_directory_never_the_package(
    https_server: tuple[str, Path, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With no --output, the bundle goes to the user's data directory, and the command says
    how to use it; the installed package's files stay as they were."""
    base, www, _ = https_server
    serve_good_bundles(www)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    packaged = {p.name: p.read_bytes() for p in tls.DATA.iterdir() if p.is_file()}
    args = refresh_args(base, tmp_path, tmp_path / "unused")
    del args[2:4]  # no --output
    assert cli.main(args) == 0
    written = tmp_path / "xdg" / "securedb" / "ca"
    assert ca.user_directory() == written
    assert sorted(p.name for p in written.iterdir()) == sorted(ca.FILES)
    out = capsys.readouterr().out
    assert f"SECUREDB_CA_BUNDLE={written / 'rds-ca-bundle.pem'}" in out
    assert {p.name: p.read_bytes() for p in tls.DATA.iterdir() if p.is_file()} == packaged
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ca.user_directory() == tmp_path / "home" / ".local" / "share" / "securedb" / "ca"
