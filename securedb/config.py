"""Config: parse a URL, keyword options and ``SECUREDB_*`` variables, validated once.

Importing this module loads no driver and no AWS SDK.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from securedb.errors import ConfigError

__all__ = ["Config"]

AUTH_MODES = ("iam", "secret", "password")
REFRESH_MODES = ("background", "lazy")
MAX_IAM_TOKEN_TTL = 900
DEFAULT_IAM_TOKEN_TTL = 900
DEFAULT_SECRET_TTL = 3600
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+psycopg": "postgresql",
    "mysql": "mysql",
    "mysql+pymysql": "mysql",
    "mariadb": "mysql",
    "mariadb+pymysql": "mysql",
}
# Engines named in RDS-managed secrets.
SECRET_ENGINES = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "aurora-postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "aurora-mysql": "mysql",
    "aurora": "mysql",
}
RDS_HOST = re.compile(r"\.([a-z]{2}(?:-[a-z]+)+-\d+)\.rds\.amazonaws\.com(?:\.cn)?$")
PROXY_HOST = re.compile(r"^[^.]+\.proxy-[^.]+\.[^.]+\.rds\.amazonaws\.com(?:\.cn)?$")

ENV_VARS = {
    "SECUREDB_AUTH": "auth",
    "SECUREDB_SECRET_ID": "secret_id",
    "SECUREDB_REGION": "region",
    "SECUREDB_CA_BUNDLE": "ca_bundle",
    "SECUREDB_TUNNEL": "tunnel",
    "SECUREDB_IAM_TOKEN_TTL": "iam_token_ttl",
    "SECUREDB_SECRET_TTL": "secret_ttl",
    "SECUREDB_REFRESH": "refresh",
    "SECUREDB_CONNECT_TIMEOUT": "connect_timeout",
}
# Driver arguments securedb owns: credentials come from `auth`, trust from `ca_bundle`.
OWNED_ARGS = {
    "password": "put a password in the URL with auth='password', or use auth='iam' / secret_id",
    "passwd": "put a password in the URL with auth='password', or use auth='iam' / secret_id",
    "user": "put the user in the URL",
    "sslrootcert": "use ca_bundle=",
    "ssl_ca": "use ca_bundle=",
    "sslpassword": "client certificates are not supported",
}
# Driver arguments that would weaken verify-full TLS, and the values that keep it.
TLS_ARGS: dict[str, tuple[Any, ...]] = {
    "sslmode": ("verify-full",),
    "ssl_min_protocol_version": ("TLSv1.2", "TLSv1.3"),
    "ssl": (),
    "ssl_disabled": (False,),
    "ssl_verify_cert": (True,),
    "ssl_verify_identity": (True,),
    "check_hostname": (True,),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """Frozen, validated settings for one database endpoint.

    Build it with `Config.from_url` or `Config.from_env`; every securedb entry point also
    accepts the same keyword options. With ``auth="secret"`` the endpoint fields may be
    empty: an RDS-managed secret supplies them (`with_secret_fields`).
    """

    auth: str
    engine: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    dbname: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    secret_id: str | None = None
    region: str | None = None
    ca_bundle: str | None = None
    tunnel: tuple[str, int] | None = None
    iam_token_ttl: int = DEFAULT_IAM_TOKEN_TTL
    secret_ttl: float = DEFAULT_SECRET_TTL
    refresh: str = "background"
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    connect_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if f.name == 'password' else repr(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        )
        return f"Config({shown})"

    @classmethod
    def from_url(cls, url: str | None = None, **options: Any) -> Config:
        """Parse ``postgresql://user@host:port/dbname`` (or ``mysql://``) and options.

        Query parameters of the URL are options too; any that securedb does not know
        are passed to the driver, like ``connect_args``.

        Raises:
            ConfigError: the URL or an option is invalid; the message names it.
        """
        fields: dict[str, Any] = {}
        if url is not None:
            fields, extra_args = _parse_url(url)
            options = {**fields.pop("options"), **options}
            if extra_args:
                options["connect_args"] = {**extra_args, **(options.get("connect_args") or {})}
        unknown = set(options) - OPTIONS
        if unknown:
            raise ConfigError(
                f"unknown option {', '.join(sorted(unknown))}; "
                f"securedb options are {', '.join(sorted(OPTIONS))}"
            )
        return _build({**fields, **options})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Config:
        """Read ``SECUREDB_URL`` and the other ``SECUREDB_*`` variables; `options` win."""
        env = os.environ if environ is None else environ
        from_env = {opt: env[var] for var, opt in ENV_VARS.items() if env.get(var)}
        return cls.from_url(env.get("SECUREDB_URL") or None, **{**from_env, **options})

    @property
    def is_proxy(self) -> bool:
        """True for an RDS Proxy endpoint (``*.proxy-*.rds.amazonaws.com``)."""
        return self.host is not None and bool(PROXY_HOST.match(self.host))

    @property
    def endpoint(self) -> str:
        """``user@host:port``, for messages (never a credential)."""
        return f"{self.user or '?'}@{self.host or '?'}:{self.port or '?'}"

    def with_secret_fields(self, secret: Mapping[str, Any]) -> Config:
        """Fill the fields the URL left empty from an RDS-managed secret's JSON."""
        engine = self.engine
        if engine is None and secret.get("engine") is not None:
            engine = SECRET_ENGINES.get(str(secret["engine"]).lower())
            if engine is None:
                raise ConfigError(
                    f"secret {self.secret_id!r} names an unsupported engine "
                    f"{secret['engine']!r}; pass a postgresql:// or mysql:// URL"
                )
        if engine is None:
            raise ConfigError(
                f"secret {self.secret_id!r} has no engine and no URL was given; "
                "pass a postgresql:// or mysql:// URL"
            )
        host = self.host or secret.get("host")
        if not host:
            raise ConfigError(f"secret {self.secret_id!r} has no host and the URL names none")
        port = self.port or _port(secret.get("port") or DEFAULT_PORTS[engine], "secret port")
        return _build(
            {
                **self._as_options(),
                "engine": engine,
                "host": str(host),
                "port": port,
                "dbname": self.dbname or secret.get("dbname"),
                "user": secret.get("username") or self.user,
            }
        )

    def _as_options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


OPTIONS = {f.name for f in dataclasses.fields(Config)} - {
    "engine",
    "host",
    "port",
    "user",
    "dbname",
    "password",
}


def _parse_url(url: str) -> tuple[dict[str, Any], dict[str, str]]:
    if not isinstance(url, str):
        raise ConfigError(
            f"url must be a string like 'postgresql://user@host:5432/db', not {type(url).__name__}"
        )
    parts = urlsplit(url)
    engine = SCHEMES.get(parts.scheme.lower())
    if engine is None:
        raise ConfigError(
            f"unsupported URL scheme {parts.scheme!r}; use one of {', '.join(sorted(SCHEMES))}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"bad port in URL for host {parts.hostname!r}") from None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    options = {k: v for k, v in query.items() if k in OPTIONS}
    extra = {k: v for k, v in query.items() if k not in OPTIONS}
    fields = {
        "engine": engine,
        "host": parts.hostname,
        "port": port,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "dbname": unquote(parts.path.lstrip("/")) or None,
        "options": options,
    }
    return fields, extra


def _build(values: dict[str, Any]) -> Config:
    v = dict(values)
    v["auth"] = _auth(v)
    engine = v.get("engine")
    if engine is None and v["auth"] != "secret":
        raise ConfigError(
            "no database URL: pass 'postgresql://user@host:5432/db' or "
            "'mysql://user@host:3306/db', or secret_id= with an RDS-managed secret"
        )
    if v.get("host") is None and v["auth"] != "secret":
        raise ConfigError("the URL has no host")
    if engine is not None and v.get("port") is None and v.get("host"):
        v["port"] = DEFAULT_PORTS[engine]
    if v["auth"] == "iam" and not v.get("user"):
        raise ConfigError("auth='iam' needs a user in the URL: postgresql://USER@host/db")
    v["iam_token_ttl"] = _number(
        v.get("iam_token_ttl", DEFAULT_IAM_TOKEN_TTL), "iam_token_ttl", int, 1, MAX_IAM_TOKEN_TTL
    )
    v["secret_ttl"] = _number(v.get("secret_ttl", DEFAULT_SECRET_TTL), "secret_ttl", float, 1)
    v["connect_timeout"] = _number(
        v.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT), "connect_timeout", float, 0.1
    )
    v["refresh"] = _choice(v.get("refresh") or _default_refresh(), "refresh", REFRESH_MODES)
    if v.get("ca_bundle") is not None:
        v["ca_bundle"] = _ca_bundle(v["ca_bundle"])
    if v.get("tunnel") is not None:
        v["tunnel"] = _tunnel(v["tunnel"])
    for name in ("secret_id", "region"):
        if v.get(name) is not None and (not isinstance(v[name], str) or not v[name].strip()):
            raise ConfigError(f"{name} must be a non-empty string")
    v["connect_args"] = _connect_args(v.get("connect_args") or {}, v.get("host"))
    return Config(**{k: val for k, val in v.items() if k in FIELDS})


FIELDS = {f.name for f in dataclasses.fields(Config)}


def _auth(v: dict[str, Any]) -> str:
    auth = v.get("auth")
    if auth is None:
        if v.get("secret_id"):
            return "secret"
        if v.get("password") is not None:
            return "password"
        raise ConfigError(
            "say how to authenticate: auth='iam' for IAM tokens, secret_id= for "
            "Secrets Manager, or a password in the URL (local development)"
        )
    auth = _choice(auth, "auth", AUTH_MODES)
    if auth == "secret" and not v.get("secret_id"):
        raise ConfigError("auth='secret' needs secret_id= (a Secrets Manager name or ARN)")
    if auth == "password" and v.get("password") is None:
        raise ConfigError("auth='password' needs a password in the URL")
    if auth != "password" and v.get("password") is not None:
        raise ConfigError(
            f"the URL has a password but auth={auth!r}; remove the password, or use auth='password'"
        )
    if auth != "secret" and v.get("secret_id"):
        raise ConfigError(f"secret_id= given with auth={auth!r}; drop one of them")
    return auth


def _choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(
            f"bad value for {name}: {value!r}; use one of {', '.join(repr(a) for a in allowed)}"
        )
    return str(value)


def _number(value: Any, name: str, kind: type, low: float, high: float | None = None) -> Any:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"bad value for {name}: {value!r}; expected a number") from None
    if number < low or (high is not None and number > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"bad value for {name}: {value!r}; must be {limit}")
    return number


def _port(value: Any, name: str) -> int:
    return int(_number(value, name, int, 1, 65535))


def _default_refresh() -> str:
    """Lazy on Lambda (no threads between invocations), background elsewhere."""
    return "lazy" if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else "background"


def _ca_bundle(value: Any) -> str:
    path = Path(os.fspath(value)).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"ca_bundle {str(path)!r} is not a file; pass the path of a PEM "
            "trust store, or leave it out to use the bundled RDS CA"
        )
    if b"-----BEGIN CERTIFICATE-----" not in path.read_bytes():
        raise ConfigError(f"ca_bundle {str(path)!r} holds no PEM certificate")
    return str(path)


def _tunnel(value: Any) -> tuple[str, int]:
    if isinstance(value, tuple) and len(value) == 2:
        host, port = value
    elif isinstance(value, str) and value.rpartition(":")[0]:
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
    else:
        raise ConfigError(
            f"bad value for tunnel: {value!r}; expected 'host:port' of the local "
            "end of an SSM or SSH port forward, like '127.0.0.1:5433'"
        )
    return str(host), _port(port, "tunnel port")


def is_loopback(host: str | None) -> bool:
    """True for localhost, 127.0.0.0/8, ::1 and Unix-socket directories."""
    if not host:
        return False
    if host.startswith("/") or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _connect_args(args: Mapping[str, Any], host: str | None) -> dict[str, Any]:
    if not isinstance(args, Mapping):
        raise ConfigError("connect_args must be a dict of driver keyword arguments")
    for name in args:
        if name in OWNED_ARGS:
            raise ConfigError(f"connect_args may not set {name!r}: {OWNED_ARGS[name]}")
        if name in TLS_ARGS and args[name] not in TLS_ARGS[name] and not is_loopback(host):
            raise ConfigError(
                f"connect_args {name}={args[name]!r} would weaken TLS for {host}; securedb "
                "always verifies the certificate and host name of a remote server"
            )
    return dict(args)


def region_from_host(host: str | None) -> str | None:
    """The AWS region in an RDS endpoint name (``*.us-east-1.rds.amazonaws.com``), if any."""
    match = RDS_HOST.search(host.lower()) if host else None
    return match.group(1) if match else None


def split_options(
    url: str | Config | None, options: dict[str, Any]
) -> tuple[Config, dict[str, Any]]:
    """securedb's options make the Config; the rest belong to SQLAlchemy or the pool."""
    own = {k: v for k, v in options.items() if k in OPTIONS}
    rest = {k: v for k, v in options.items() if k not in OPTIONS}
    if isinstance(url, Config):
        if own:
            raise ConfigError(
                f"options {', '.join(sorted(own))} given with a Config; "
                "set them on the Config instead"
            )
        return url, rest
    return Config.from_url(url, **own), rest
