"""The network half of ``securedb check``: resolve, connect, and a real TLS handshake.

PostgreSQL: send an SSLRequest, expect ``S``, then TLS. MySQL: read the server's
greeting, send an SSL request packet, then TLS. The handshake verifies the chain and the
real endpoint's name (`tls.ssl_context`), while the socket goes to the tunnel if there is
one. No credential is ever sent here: the connection is closed after the handshake.

When verification fails, `presented` shakes hands once more without verifying, only to
show which certificate the server presents (names, issuer, expiry).
"""

from __future__ import annotations

import dataclasses
import datetime
import socket
import ssl
import struct
from typing import Any

__all__ = [
    "Certificate",
    "NoTLS",
    "Session",
    "connect_tcp",
    "handshake",
    "presented",
    "resolve",
]

SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL's SSLRequest message
CLIENT_SSL = 0x0800
# CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION |
# CLIENT_PLUGIN_AUTH: what any modern client announces in its SSL request.
MYSQL_CAPABILITIES = 0x0001 | 0x0200 | CLIENT_SSL | 0x8000 | 0x00080000
MYSQL_UTF8MB4 = 45


class NoTLS(Exception):
    """The server answered, but does not offer TLS (or refused the connection)."""


@dataclasses.dataclass(frozen=True)
class Certificate:
    subject: str
    issuer: str
    names: tuple[str, ...]
    not_after: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Session:
    version: str
    cipher: str
    certificate: Certificate


def resolve(host: str, port: int) -> list[str]:
    """Every address of `host`, in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def connect_tcp(addresses: list[str], port: int, timeout: float) -> socket.socket:
    """A socket to the first address that accepts, as libpq tries them; else the last error."""
    error: OSError = OSError(f"no address to connect to on port {port}")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            error = exc
    raise error


def handshake(
    sock: socket.socket, engine: str, context: ssl.SSLContext, server_name: str
) -> Session:
    """Ask for TLS the engine's way and verify `server_name`'s certificate; then close."""
    try:
        _start_tls(sock, engine)
    except BaseException:
        sock.close()
        raise
    with context.wrap_socket(sock, server_hostname=server_name) as tls_sock:
        cert = tls_sock.getpeercert()
        version, cipher = tls_sock.version() or "?", (tls_sock.cipher() or ("?",))[0]
    return Session(version, cipher, _from_dict(cert or {}))


def presented(
    address: str, port: int, engine: str, server_name: str, timeout: float
) -> Certificate | None:
    """The certificate the server presents, read without verifying it, for diagnosis only.

    Nothing but a TLS ClientHello is sent. None if it cannot be read (no TLS, or the
    ``cryptography`` package is missing to parse it).
    """
    try:
        from cryptography import x509
    except ImportError:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only to read the certificate; nothing is sent
    try:
        with socket.create_connection((address, port), timeout) as sock:
            _start_tls(sock, engine)
            with context.wrap_socket(sock, server_hostname=server_name) as tls_sock:
                der = tls_sock.getpeercert(binary_form=True)
    except (OSError, NoTLS):
        return None
    return _from_der(x509.load_der_x509_certificate(der)) if der else None


def _start_tls(sock: socket.socket, engine: str) -> None:
    if engine == "postgresql":
        sock.sendall(SSL_REQUEST)
        answer = _read(sock, 1)
        if answer != b"S":
            raise NoTLS(f"the server answered the SSLRequest with {answer!r}, not 'S'")
        return
    header = _read(sock, 4)
    greeting = _read(sock, int.from_bytes(header[:3], "little"))
    if greeting[:1] == b"\xff":  # an error packet: host blocked, too many connections ...
        raise NoTLS(f"the server refused the connection: {greeting[9:].decode(errors='replace')}")
    version_end = greeting.index(b"\0", 1)
    capabilities = int.from_bytes(greeting[version_end + 14 : version_end + 16], "little")
    if not capabilities & CLIENT_SSL:
        raise NoTLS("the server's greeting does not offer TLS (no CLIENT_SSL capability)")
    payload = struct.pack("<IIB23x", MYSQL_CAPABILITIES, 1 << 24, MYSQL_UTF8MB4)
    sock.sendall(len(payload).to_bytes(3, "little") + bytes([header[3] + 1]) + payload)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise NoTLS("the server closed the connection before TLS started")
        data += chunk
    return data


def _from_dict(cert: dict[str, Any]) -> Certificate:
    """What `ssl` reports for a verified peer."""

    def name(rdns: Any) -> str:
        fields = {key: value for rdn in rdns for key, value in rdn}
        return str(fields.get("commonName") or fields.get("organizationName") or "?")

    names = tuple(str(value) for _, value in cert.get("subjectAltName", ()))
    not_after = datetime.datetime.fromtimestamp(
        ssl.cert_time_to_seconds(cert["notAfter"]), datetime.timezone.utc
    )
    return Certificate(
        name(cert.get("subject", ())), name(cert.get("issuer", ())), names, not_after
    )


def _from_der(cert: Any) -> Certificate:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    def name(value: x509.Name) -> str:
        for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
            found = value.get_attributes_for_oid(oid)
            if found:
                return str(found[0].value)
        return value.rfc4514_string() or "?"

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(
            [*san.get_values_for_type(x509.DNSName)]
            + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        )
    except x509.ExtensionNotFound:
        names = ()
    return Certificate(name(cert.subject), name(cert.issuer), names, cert.not_valid_after_utc)
