"""The bundled RDS CA snapshot and the maintainer command that refreshes it."""

from __future__ import annotations

import hashlib
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from securedb import ca, cli, errors, tls

RDS_SNAPSHOT_SHA256 = "2c151768edd48e9ef6719de74fdcbdebe290d1e87bc02ce9014ea6eea557d2a0"


def test_bundled_snapshot_matches_its_provenance() -> None:
    provenance = json.loads((tls.DATA / "PROVENANCE.json").read_text())
    for name, facts in provenance.items():
        data = (tls.DATA / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == facts["sha256"]
        assert data.count(b"-----BEGIN CERTIFICATE-----") == facts["certificates"]
    rds = tls.RDS_BUNDLE.read_bytes()
    assert hashlib.sha256(rds).hexdigest() == RDS_SNAPSHOT_SHA256
    assert len(ca.check_bundle(rds, "bundled", ca.RDS_ISSUERS, ca.MIN_RDS_CERTS)) == 118
    proxy = tls.PROXY_BUNDLE.read_bytes()
    assert proxy.startswith(rds.rstrip(b"\n"))
    assert len(ca.check_bundle(proxy, "proxy", ca.RDS_ISSUERS + ca.ATS_ISSUERS)) == 123
    assert (
        ssl.create_default_context(cafile=str(tls.PROXY_BUNDLE)).cert_store_stats()["x509_ca"]
        == 123
    )


@pytest.mark.parametrize(
    ("pem", "match"),
    [
        (b"", "0 certificates"),
        (b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", "does not parse"),
        (b"<html>captive portal</html>", "0 certificates"),
    ],
)
def test_check_bundle_rejects(pem: bytes, match: str) -> None:
    with pytest.raises(errors.TLSError, match=match):
        ca.check_bundle(pem, "download", ca.RDS_ISSUERS)


def test_check_bundle_rejects_other_issuers_and_extra_text() -> None:
    other = trustme.CA(organization_name="Someone Else").cert_pem.bytes()
    with pytest.raises(errors.TLSError, match="not an Amazon RDS CA"):
        ca.check_bundle(other, "download", ca.RDS_ISSUERS)
    rds = trustme.CA(organization_name="Amazon RDS test").cert_pem.bytes()
    with pytest.raises(errors.TLSError, match="outside"):
        ca.check_bundle(rds + b"#!/bin/sh\n", "download", ca.RDS_ISSUERS)


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path, trustme.CA]]:
    """A local HTTPS server for `tmp_path/www`, with a certificate from a test CA."""
    authority = trustme.CA()
    www = tmp_path / "www"
    www.mkdir()
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(www))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    ca_file = tmp_path / "download-ca.pem"
    authority.cert_pem.write_to_path(ca_file)
    yield f"https://127.0.0.1:{server.server_address[1]}", www, authority
    server.shutdown()
    server.server_close()


def test_refresh_from_a_local_https_server(
    https_server: tuple[str, Path, trustme.CA], tmp_path: Path
) -> None:
    base, www, _ = https_server
    rds = b"".join(
        trustme.CA(organization_name="Amazon RDS test").cert_pem.bytes() for _ in range(12)
    )
    (www / "global-bundle.pem").write_bytes(rds)
    (www / "AmazonRootCA1.pem").write_bytes(trustme.CA(organization_name="Amazon").cert_pem.bytes())
    out = tmp_path / "data"
    code = cli.main(
        [
            "ca",
            "refresh",
            "--output",
            str(out),
            "--rds-url",
            f"{base}/global-bundle.pem",
            "--ats-url",
            f"{base}/AmazonRootCA1.pem",
            "--cafile",
            str(tmp_path / "download-ca.pem"),
        ]
    )
    assert code == 0
    provenance = json.loads((out / "PROVENANCE.json").read_text())
    assert provenance["rds-ca-bundle.pem"]["certificates"] == 12
    assert provenance["rds-proxy-bundle.pem"]["certificates"] == 13
    assert (
        hashlib.sha256((out / "rds-ca-bundle.pem").read_bytes()).hexdigest()
        == provenance["rds-ca-bundle.pem"]["sha256"]
    )


def test_refresh_refuses_bad_downloads(
    https_server: tuple[str, Path, trustme.CA], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, www, _ = https_server
    (www / "global-bundle.pem").write_bytes(b"<html>not a bundle</html>")
    out = tmp_path / "data"
    args = [
        "ca",
        "refresh",
        "--output",
        str(out),
        "--rds-url",
        f"{base}/global-bundle.pem",
        "--cafile",
        str(tmp_path / "download-ca.pem"),
    ]
    assert cli.main(args) == 1
    assert "0 certificates" in capsys.readouterr().err
    assert not out.exists()  # nothing written
    # A server the download does not trust is refused too.
    assert cli.main(args[:-2]) == 1
    assert "download failed" in capsys.readouterr().err
    assert cli.main(["ca", "refresh", "--rds-url", "http://127.0.0.1/x"]) == 1
