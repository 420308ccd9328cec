"""The seven steps of ``securedb check``, each a function of the state the earlier left.

A step returns its detail line, or raises `Failed` with what went wrong and the
guide's likely causes and fix (`_hints`). Login goes through the same path as
`securedb.connect` (a `Connector`), with the credential the credentials step fetched.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from securedb import tls
from securedb.cli import _errors, _facts, _probe
from securedb.cli._hints import HINTS
from securedb.cli._options import config_from
from securedb.config import Config, region_from_host
from securedb.errors import (
    AuthenticationError,
    ConfigError,
    CredentialsError,
    SecureDBError,
    TLSError,
)

__all__ = ["STEPS", "Failed", "State"]

EXPIRY_WARNING = datetime.timedelta(days=30)
CLOCK_SKEW_WARNING = 300.0  # SigV4 tolerates about five minutes


class Failed(Exception):
    def __init__(self, detail: str, hint: str, *, usage: bool = False) -> None:
        super().__init__(detail)
        self.detail, self.causes, self.fix = detail, *HINTS[hint]
        self.usage = usage  # a configuration error: exit status 2


@dataclasses.dataclass
class State:
    args: argparse.Namespace
    cfg: Any = None  # the Config, once the config step passed
    engine: str = ""  # and its endpoint, known by then
    host: str = ""
    port: int = 0
    connector: Any = None
    addresses: list[str] = dataclasses.field(default_factory=list)
    sock: socket.socket | None = None
    conn: Any = None

    def close(self) -> None:
        for closable in (self.sock, self.conn):
            if closable is not None:
                closable.close()
        if self.connector is not None:
            self.connector.close()


def config(state: State) -> str:
    from securedb.connector import Connector

    try:
        cfg = config_from(state.args)
        state.connector = Connector(cfg)  # it judges the driver arguments
    except ConfigError as exc:
        raise Failed(_errors.message(exc), "config", usage=True) from None
    if cfg.host is None:  # an RDS-managed secret names the endpoint
        try:
            cfg = state.connector.config
        except SecureDBError as exc:
            raise Failed(
                f"the endpoint comes from secret {cfg.secret_id!r}, which could not be used: "
                f"{_errors.message(exc)}",
                "credentials-secret",
            ) from None
    assert cfg.engine is not None
    assert cfg.host is not None
    assert cfg.port is not None
    state.cfg, state.engine, state.host, state.port = cfg, cfg.engine, cfg.host, cfg.port
    parts = [
        f"{cfg.engine} {cfg.endpoint}/{cfg.dbname or ''}",
        f"auth {cfg.auth}",
        f"trust store {tls.ca_file(cfg)}",
    ]
    if cfg.tunnel:
        parts.append(f"tunnel {_address(cfg.tunnel)}")
    if cfg.is_proxy:
        parts.append("an RDS Proxy endpoint")
    return ", ".join(parts)


def dns(state: State) -> str:
    cfg: Config = state.cfg
    host, port = cfg.tunnel or (state.host, state.port)
    try:
        state.addresses = _probe.resolve(host, port)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise Failed(f"{host} does not resolve: {reason}", "dns") from None
    detail = f"{host} -> {', '.join(state.addresses)}"
    if cfg.tunnel:
        try:
            real = ", ".join(_probe.resolve(state.host, state.port))
        except (OSError, UnicodeError):
            real = "does not resolve here (fine: the socket goes to the tunnel)"
        detail += f"; {cfg.host} -> {real}"
    return detail


def tcp(state: State) -> str:
    cfg: Config = state.cfg
    port = cfg.tunnel[1] if cfg.tunnel else state.port
    try:
        state.sock = _probe.connect_tcp(state.addresses, port, cfg.connect_timeout)
    except ConnectionRefusedError:
        raise Failed(
            f"connection to port {port} refused on {', '.join(state.addresses)}", "tcp-refused"
        ) from None
    except TimeoutError:
        raise Failed(
            f"no answer from port {port} on {', '.join(state.addresses)} within "
            f"{cfg.connect_timeout:g} s",
            "tcp-timeout",
        ) from None
    except OSError as exc:
        raise Failed(
            f"cannot connect to port {port}: {exc.strerror or exc}", "tcp-timeout"
        ) from None
    peer = state.sock.getpeername()
    return f"connected to {_address((peer[0], peer[1]))}"


def tls_step(state: State) -> str:
    cfg: Config = state.cfg
    assert state.sock is not None
    state.sock.settimeout(cfg.connect_timeout)
    peer = state.sock.getpeername()
    sock, state.sock = state.sock, None  # the handshake closes it
    try:
        session = _probe.handshake(sock, state.engine, tls.ssl_context(cfg), state.host)
    except ssl.SSLCertVerificationError as exc:
        raise _certificate_failure(state, exc, peer[0], peer[1]) from None
    except _probe.NoTLS as exc:
        raise Failed(f"no TLS: {exc}", "tls-none") from None
    except (ssl.SSLError, OSError) as exc:
        raise Failed(f"TLS handshake failed: {exc}", "tls-other") from None
    cert = session.certificate
    left = cert.not_after - datetime.datetime.now(datetime.timezone.utc)
    expiry = f"expires {cert.not_after:%Y-%m-%d} (in {left.days} days)"
    if left < EXPIRY_WARNING:
        expiry += ": soon, move the instance to a current CA"
    return (
        f"{session.version} {session.cipher}; the certificate names {cfg.host} and chains to "
        f"the trust store; issued by {cert.issuer!r}; {expiry}"
    )


def _certificate_failure(
    state: State, exc: ssl.SSLCertVerificationError, address: str, port: int
) -> Failed:
    cfg: Config = state.cfg
    cert = _probe.presented(address, port, state.engine, state.host, cfg.connect_timeout)
    seen = (
        f"; the server presents {cert.subject!r} for {', '.join(cert.names) or 'no names'}, "
        f"issued by {cert.issuer!r}, valid until {cert.not_after:%Y-%m-%d}"
        if cert
        else ""
    )
    reason = exc.verify_message or str(exc)
    if exc.verify_code == 62 or "mismatch" in reason:  # X509_V_ERR_HOSTNAME_MISMATCH
        return Failed(f"the certificate does not name {cfg.host}{seen}", "tls-name")
    if exc.verify_code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
        return Failed(f"the certificate has expired{seen}", "tls-expired")
    return Failed(
        f"the certificate is not trusted by {tls.ca_file(cfg)} ({reason}){seen}", "tls-untrusted"
    )


def credentials(state: State) -> str:
    cfg: Config = state.cfg
    try:
        cred = state.connector.cache.get()
    except CredentialsError as exc:
        raise Failed(_errors.message(exc), f"credentials-{cfg.auth}") from None
    if cfg.auth == "password":
        return f"a static password for {cred.user} from the URL (never refreshed)"
    if cfg.auth == "iam":
        valid = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            seconds=cred.expires_at - time.monotonic()
        )
        region = cfg.region or region_from_host(cfg.host) or os.environ.get("AWS_REGION")
        return (
            f"IAM token for {cred.user}@{cfg.host}:{cfg.port} signed locally "
            f"({cred.version}, region {region or 'from the AWS config'}, AWS credentials "
            f"from {_facts.key_source()}), valid until {valid:%H:%M:%S} UTC"
        )
    return (
        f"secret {cfg.secret_id!r} read for {cred.user} (version {str(cred.version)[:8]}, "
        f"served for {cfg.secret_ttl:g} s){_facts.secret_facts(cfg)}"
    )


def login(state: State) -> str:
    cfg: Config = state.cfg
    try:
        state.conn = state.connector.connect()
    except AuthenticationError as exc:
        raise Failed(_errors.message(exc), f"login-{cfg.auth}") from None
    except TLSError as exc:
        raise Failed(_errors.message(exc), "tls-other") from None
    except CredentialsError as exc:
        raise Failed(_errors.message(exc), f"credentials-{cfg.auth}") from None
    except Exception as exc:  # the driver's own error, cleaned of secrets by the connector
        words = _errors.message(exc)
        hint = f"login-{cfg.auth}" if "authentication failed" in words else "login-other"
        raise Failed(f"{type(exc).__name__}: {words}", hint) from None
    return f"logged in as {state.connector.cache.get().user} over verified TLS"


def query(state: State) -> str:
    cfg: Config = state.cfg
    try:
        facts = _server_facts(state.conn, state.engine)
    except Exception as exc:
        raise Failed(f"{type(exc).__name__}: {' '.join(str(exc).split())}", "query") from None
    one, version, read_only, server_port, server_time, local_time = facts
    role = "read-only (a standby or reader)" if read_only else "writer"
    if cfg.is_proxy:
        proxy = "through RDS Proxy (by its endpoint name)"
    elif server_port and int(server_port) != cfg.port:
        proxy = (
            f"something is in between (the server listens on {server_port}, the endpoint "
            f"is :{cfg.port}): a proxy, a pooler or a port mapping"
        )
    else:
        proxy = "no proxy seen"
    skew = float(server_time) - local_time
    clock = f"server clock {skew:+.1f} s from this machine's"
    if abs(skew) > CLOCK_SKEW_WARNING:
        clock += " (IAM tokens are dated by this machine's clock: sync it)"
    return f"SELECT 1 returned {one}; {version}; {role}; {proxy}; {clock}"


def _server_facts(conn: Any, engine: str) -> tuple[Any, ...]:
    if engine == "postgresql":
        sql = (
            "SELECT 1, 'PostgreSQL ' || current_setting('server_version'), "
            "pg_is_in_recovery(), inet_server_port(), extract(epoch FROM clock_timestamp())"
        )
    else:
        sql = (
            "SELECT 1, CONCAT('MySQL protocol, server ', VERSION()), "
            "@@global.read_only OR @@innodb_read_only, @@port, UNIX_TIMESTAMP(NOW(6))"
        )
    before = time.time()
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    return (*row, (before + time.time()) / 2)


def _address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


STEPS: tuple[tuple[str, Callable[[State], str]], ...] = (
    ("config", config),
    ("dns", dns),
    ("tcp", tcp),
    ("tls", tls_step),
    ("credentials", credentials),
    ("login", login),
    ("query", query),
)
