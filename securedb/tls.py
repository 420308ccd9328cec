"""Trust stores, SSLContexts and libpq TLS parameters: verify-full, TLS 1.2 or newer.

The trust store is `ca_bundle` if given, else the bundled RDS CA snapshot
(``data/rds-ca-bundle.pem``); RDS Proxy endpoints present ACM certificates, so for them
the bundle also holds the Amazon Trust Services roots (``data/rds-proxy-bundle.pem``).
``data/PROVENANCE.json`` records where each came from, when, and its sha256.
"""

from __future__ import annotations

import functools
import socket
import ssl
from pathlib import Path
from typing import Any

from securedb.config import Config

__all__ = ["PROXY_BUNDLE", "RDS_BUNDLE", "ca_file", "libpq_params", "ssl_context"]

DATA = Path(__file__).with_name("data")
RDS_BUNDLE = DATA / "rds-ca-bundle.pem"
PROXY_BUNDLE = DATA / "rds-proxy-bundle.pem"


def ca_file(cfg: Config) -> str:
    """The PEM file that `cfg`'s server certificate must chain to."""
    if cfg.ca_bundle:
        return cfg.ca_bundle
    return str(PROXY_BUNDLE if cfg.is_proxy else RDS_BUNDLE)


@functools.lru_cache(maxsize=16)
def _context(cafile: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def ssl_context(cfg: Config) -> ssl.SSLContext:
    """A verifying context: certificate chain and host name, TLS 1.2 or newer.

    Contexts are shared per trust store (loading a bundle costs milliseconds).
    """
    return _context(ca_file(cfg))


def libpq_params(cfg: Config) -> dict[str, Any]:
    """libpq's verify-full parameters, and for a tunnel the address the socket goes to.

    With a tunnel, ``host`` stays the real endpoint name (certificate check and SNI) and
    ``hostaddr``/``port`` point at the local end of the forward.
    """
    params: dict[str, Any] = {
        "sslmode": "verify-full",
        "sslrootcert": ca_file(cfg),
        "ssl_min_protocol_version": "TLSv1.2",
        "gssencmode": "disable",  # else a GSSAPI-capable libpq may try GSS encryption first
    }
    if cfg.tunnel is not None:
        params["hostaddr"], params["port"] = socket_address(cfg.tunnel)
    return params


def socket_address(tunnel: tuple[str, int]) -> tuple[str, int]:
    """The numeric address of a tunnel's local end (libpq's ``hostaddr`` takes no name)."""
    host, port = tunnel
    if host.lower() == "localhost":
        return "127.0.0.1", port
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return str(info[0][4][0]), port
