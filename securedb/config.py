"""Config: parse a URL, keyword options and ``SECUREDB_*`` variables, validated once.

Importing this module loads no driver and no AWS SDK.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal, get_args
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from securedb import _values
from securedb._values import is_loopback
from securedb.errors import ConfigError
from securedb.topology import Cluster

__all__ = ["Config", "is_loopback"]

AuthMode = Literal["iam", "secret", "password"]
RefreshMode = Literal["background", "lazy"]
Engine = Literal["postgresql", "mysql"]
TopologyMode = Literal["auto", "off"]
Role = Literal["writer", "reader"]
AUTH_MODES: tuple[str, ...] = get_args(AuthMode)
REFRESH_MODES: tuple[str, ...] = get_args(RefreshMode)
ENGINES: tuple[str, ...] = get_args(Engine)
TOPOLOGY_MODES: tuple[str, ...] = get_args(TopologyMode)
ROLES: tuple[str, ...] = get_args(Role)
DEFAULT_MAX_LAG = 5.0
MAX_IAM_TOKEN_TTL = 900
DEFAULT_IAM_TOKEN_TTL = 900
DEFAULT_SECRET_TTL = 3600
MAX_SECRET_TTL = 7 * 24 * 3600.0
DEFAULT_CONNECT_TIMEOUT = 5.0
MAX_TIMEOUT = 3600.0
# How close a URL query name must be to a securedb option to be taken for a typo of it.
OPTION_TYPO_CUTOFF = 0.75
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
# A URL's scheme: the engine, and the driver it names (None: the entry point's default).
SCHEMES: dict[str, tuple[Engine, str | None]] = {
    "postgresql": ("postgresql", None),
    "postgres": ("postgresql", None),
    "postgresql+psycopg": ("postgresql", "psycopg"),
    "postgresql+psycopg_async": ("postgresql", "psycopg"),
    "postgresql+asyncpg": ("postgresql", "asyncpg"),
    "mysql": ("mysql", None),
    "mysql+pymysql": ("mysql", "pymysql"),
    "mysql+aiomysql": ("mysql", "aiomysql"),
    "mariadb": ("mysql", None),
    "mariadb+pymysql": ("mysql", "pymysql"),
    "mariadb+aiomysql": ("mysql", "aiomysql"),
}
# The drivers of each engine; the first is the default.
DRIVERS: dict[str, tuple[str, ...]] = {
    "postgresql": ("psycopg", "asyncpg"),
    "mysql": ("pymysql", "aiomysql"),
}
# Engines named in RDS-managed secrets.
SECRET_ENGINES: dict[str, Engine] = {
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
    "SECUREDB_TOPOLOGY": "topology",
    "SECUREDB_ROLE": "role",
    "SECUREDB_MAX_LAG": "max_lag",
    "SECUREDB_READER_FALLBACK": "reader_fallback",
}
REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")


class DriverArgs(Mapping[str, Any]):
    """A read-only dict of driver keyword arguments, so a `Config` is a value all the way down.

    Its hash covers the names only: values may be unhashable (a converters dict), and
    equal mappings have equal names.
    """

    __slots__ = ("_args",)

    def __init__(self, args: Mapping[str, Any] | None = None) -> None:
        self._args = dict(args or {})

    def __getitem__(self, name: str) -> Any:
        return self._args[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._args)

    def __len__(self) -> int:
        return len(self._args)

    def __hash__(self) -> int:
        return hash(frozenset(self._args))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and self._args == dict(other)

    def __repr__(self) -> str:
        return repr(self._args)


def _default_refresh() -> RefreshMode:
    """Lazy on Lambda (no threads between invocations), background elsewhere."""
    return "lazy" if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else "background"


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """Frozen, validated settings for one database endpoint: a hashable value.

    Build it with `Config.from_url` or `Config.from_env`; every securedb entry point also
    accepts the same keyword options. Every way of making one (the constructor,
    `dataclasses.replace`) validates it. With ``auth="secret"`` the endpoint fields may
    be empty: an RDS-managed secret supplies them (`with_secret_fields`).

    Raises:
        ConfigError: a field is invalid; the message names it and what is allowed.
    """

    auth: AuthMode
    engine: Engine | None = None
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
    refresh: RefreshMode = dataclasses.field(default_factory=_default_refresh)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    connect_args: Mapping[str, Any] = dataclasses.field(default_factory=DriverArgs)
    driver: str | None = None
    topology: TopologyMode = "auto"
    role: Role | None = None
    max_lag: float = DEFAULT_MAX_LAG
    reader_fallback: bool = False

    def __post_init__(self) -> None:
        for name, value in _validated(self).items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if f.name == 'password' else repr(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) not in (None, {})
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
                _check_query_names(extra_args)
                given = options.get("connect_args") or {}
                if not isinstance(given, Mapping):
                    raise ConfigError("connect_args must be a dict of driver keyword arguments")
                options["connect_args"] = {**extra_args, **given}
        unknown = set(options) - OPTIONS
        if unknown:
            raise ConfigError(
                f"unknown option {', '.join(sorted(unknown))}; "
                f"securedb options are {', '.join(sorted(OPTIONS))}"
            )
        values = {**fields, **options}
        values["auth"] = _infer_auth(values)
        return cls(**{k: v for k, v in values.items() if v is not None or k == "auth"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Config:
        """Read ``SECUREDB_URL`` and the other ``SECUREDB_*`` variables; `options` win.

        An empty variable counts as unset.

        Raises:
            ConfigError: a value is invalid, or neither ``SECUREDB_URL`` nor
                ``SECUREDB_SECRET_ID`` names a database; the message names the variable.
        """
        env = os.environ if environ is None else environ
        url = env.get("SECUREDB_URL") or None
        values = {**{opt: env[var] for var, opt in ENV_VARS.items() if env.get(var)}, **options}
        _check_env_names_a_database(url, values)
        return cls.from_url(url, **values)

    @property
    def is_proxy(self) -> bool:
        """True for an RDS Proxy endpoint (``*.proxy-*.rds.amazonaws.com``)."""
        return self.host is not None and bool(PROXY_HOST.match(self.host))

    @property
    def is_local(self) -> bool:
        """True when every place a connection's socket can go is this machine.

        Only then may TLS be relaxed (local development): the host must be loopback or a
        Unix-socket directory, and so must the tunnel, if any. The name TLS would verify
        is not enough: a tunnel sends the socket elsewhere.
        """
        return is_loopback(self.host) and (self.tunnel is None or is_loopback(self.tunnel[0]))

    @property
    def cluster(self) -> Cluster | None:
        """The Aurora cluster whose topology routes connections, if any.

        Only for a cluster endpoint (``.cluster-`` or ``.cluster-ro-``) with
        ``topology="auto"`` and no tunnel: through a port forward every connection goes
        to the tunnel, whatever instance it names.
        """
        if self.topology != "auto" or self.tunnel is not None:
            return None
        return Cluster.of(self.host, self.port)

    @property
    def wants_reader(self) -> bool:
        """``role``, which defaults to the endpoint's: reader for a cluster-ro endpoint."""
        if self.role is not None:
            return self.role == "reader"
        cluster = self.cluster
        return cluster is not None and cluster.reader_endpoint

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
        return dataclasses.replace(
            self,
            engine=engine,
            host=str(host),
            port=self.port
            or _values.port(secret.get("port") or DEFAULT_PORTS[engine], "secret port"),
            dbname=self.dbname or secret.get("dbname"),
            user=secret.get("username") or self.user,
        )


OPTIONS = {f.name for f in dataclasses.fields(Config)} - {
    "engine",
    "host",
    "port",
    "user",
    "dbname",
    "password",
}


def _check_env_names_a_database(url: str | None, values: Mapping[str, Any]) -> None:
    """Say which variable to set when neither a URL nor a secret names a database."""
    auth, secret_id = values.get("auth"), values.get("secret_id")
    if url is not None or secret_id is not None:
        return
    if auth == "secret":
        raise ConfigError(
            "auth='secret' but SECUREDB_SECRET_ID is not set: set it to the name or ARN of "
            "the Secrets Manager secret"
        )
    if auth in ("iam", "password"):
        raise ConfigError(
            f"no database URL: SECUREDB_URL is not set and auth={auth!r} needs one; set "
            "SECUREDB_URL to 'postgresql://user@host:5432/db' or 'mysql://user@host:3306/db'"
        )
    raise ConfigError(
        "no database in the environment: SECUREDB_URL and SECUREDB_SECRET_ID are not set; "
        "set SECUREDB_URL to 'postgresql://user@host:5432/db' (with SECUREDB_AUTH=iam for "
        "IAM tokens), or SECUREDB_SECRET_ID to the name or ARN of an RDS-managed secret"
    )


def _parse_url(url: Any) -> tuple[dict[str, Any], dict[str, str]]:
    if hasattr(url, "render_as_string") and hasattr(url, "drivername"):  # a sqlalchemy.URL
        url = url.render_as_string(hide_password=False)
    if not isinstance(url, str):
        raise ConfigError(
            f"url must be a string like 'postgresql://user@host:5432/db', not {type(url).__name__}"
        )
    # Read the scheme first: urlsplit takes no '_' in one ('postgresql+psycopg_async').
    scheme, separator, rest = url.partition("://")
    known = SCHEMES.get(scheme.lower()) if separator else None
    if known is None:
        shown = repr(scheme) if separator else "none"
        raise ConfigError(
            f"unsupported URL scheme {shown}; use one of {', '.join(sorted(SCHEMES))}"
        )
    engine, driver = known
    try:
        parts = urlsplit(f"db://{rest}")
    except ValueError:
        raise ConfigError("bad URL: its host does not parse") from None
    port = _url_port(parts, url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    options = {k: v for k, v in query.items() if k in OPTIONS}
    extra = {k: v for k, v in query.items() if k not in OPTIONS}
    fields = {
        "engine": engine,
        "driver": driver,
        "host": parts.hostname,
        "port": port,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "dbname": unquote(parts.path.lstrip("/")) or None,
        "options": options,
    }
    return fields, extra


def _url_port(parts: SplitResult, url: str) -> int | None:
    """The URL's port; a ConfigError when it is not a number from 1 to 65535.

    The text is quoted only when the netloc holds the URL's '@': without it, a '/', '?'
    or '#' in a password may have cut the netloc short, and the "port" be the password.
    """
    try:
        return parts.port
    except ValueError:
        pass
    if "@" not in parts.netloc and "@" in url:
        raise ConfigError(
            "bad URL: its host or port does not parse; a '/', '?' or '#' in the user name "
            "or password must be written %2F, %3F, %23"
        )
    hostinfo = parts.netloc.rpartition("@")[2]  # found as urlsplit finds it
    _, bracket, rest = hostinfo.partition("[")
    text = (rest.partition("]")[2] if bracket else hostinfo).partition(":")[2]
    # Only a number is quoted: in 'postgresql://app:s3cret/db' (no '@host'), the "port"
    # is the password.
    shown = f" {text!r}" if text.lstrip("-").isdigit() else ""
    raise ConfigError(f"bad port{shown} in the URL: expected a number from 1 to 65535")


def _check_query_names(extra: Mapping[str, str]) -> None:
    """Refuse a misspelt securedb option in the URL's query (``?auht=iam``) before anything
    else is judged, so it is named, not the setting it failed to make.

    The other names are the driver's, judged where a connector is made
    (`securedb.drivers.check_config`). The cutoff leaves every driver argument alone: a
    test checks each adapter's names against it.
    """
    for name in extra:
        close = difflib.get_close_matches(name.lower(), OPTIONS, n=1, cutoff=OPTION_TYPO_CUTOFF)
        if close:
            raise ConfigError(
                f"unknown option {name!r} in the URL's query (did you mean {close[0]!r}?)"
            )


def _infer_auth(v: Mapping[str, Any]) -> Any:
    """The auth mode asked for, else the one the other options imply."""
    if v.get("auth") is not None:
        return v["auth"]
    if v.get("secret_id"):
        return "secret"
    if v.get("password") is not None:
        return "password"
    raise ConfigError(
        "say how to authenticate: auth='iam' for IAM tokens, secret_id= for "
        "Secrets Manager, or a password in the URL (local development)"
    )


def _validated(cfg: Config) -> dict[str, Any]:
    """Every field of `cfg` checked and normalised; a ConfigError names the first bad one."""
    v: dict[str, Any] = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    v["auth"] = _values.choice(v["auth"], "auth", AUTH_MODES)
    if v["engine"] is not None:
        v["engine"] = _values.choice(v["engine"], "engine", ENGINES)
    if v["auth"] != "secret":
        if v["engine"] is None:
            raise ConfigError(
                "no database URL: pass 'postgresql://user@host:5432/db' or "
                "'mysql://user@host:3306/db', or secret_id= with an RDS-managed secret"
            )
        if v["host"] is None:
            raise ConfigError("the URL has no host")
    _check_auth(v)
    for name in ("host", "user", "dbname", "password", "secret_id", "region"):
        if v[name] is not None and (not isinstance(v[name], str) or not v[name]):
            raise ConfigError(f"{name} must be a non-empty string")
    if v["host"] is not None:
        _values.check_host(v["host"])
    if v["port"] is not None:
        v["port"] = _values.port(v["port"], "port")
    elif v["engine"] is not None and v["host"] is not None:
        v["port"] = DEFAULT_PORTS[v["engine"]]
    if v["region"] is not None and not REGION.match(v["region"]):
        raise ConfigError(
            f"bad value for region: {v['region']!r}; expected a name like 'eu-west-2'"
        )
    if v["auth"] == "iam":
        _check_signing_region(v["region"], v["host"])
    v["iam_token_ttl"] = _values.integer(v["iam_token_ttl"], "iam_token_ttl", 1, MAX_IAM_TOKEN_TTL)
    v["secret_ttl"] = _values.number(v["secret_ttl"], "secret_ttl", 1, MAX_SECRET_TTL)
    v["connect_timeout"] = _values.number(v["connect_timeout"], "connect_timeout", 0.1, MAX_TIMEOUT)
    v["refresh"] = _values.choice(v["refresh"], "refresh", REFRESH_MODES)
    _check_routing(v)
    if v["ca_bundle"] is not None:
        v["ca_bundle"] = _values.ca_bundle(v["ca_bundle"])
    if v["tunnel"] is not None:
        v["tunnel"] = _values.tunnel(v["tunnel"])
    v["driver"] = _driver(v["driver"], v["engine"])
    v["connect_args"] = _connect_args(v["connect_args"])
    return v


def _check_auth(v: Mapping[str, Any]) -> None:
    auth = v["auth"]
    if auth == "iam" and not v["user"]:
        raise ConfigError("auth='iam' needs a user in the URL: postgresql://USER@host/db")
    if auth == "secret" and not v["secret_id"]:
        raise ConfigError("auth='secret' needs secret_id= (a Secrets Manager name or ARN)")
    if auth == "password" and v["password"] is None:
        raise ConfigError("auth='password' needs a password in the URL")
    if auth == "password" and not v["user"]:
        raise ConfigError("auth='password' needs a user in the URL: postgresql://USER:PW@host/db")
    if auth != "password" and v["password"] is not None:
        raise ConfigError(
            f"the URL has a password but auth={auth!r}; remove the password, or use auth='password'"
        )
    if auth != "secret" and v["secret_id"]:
        raise ConfigError(f"secret_id= given with auth={auth!r}; drop one of them")


def _check_signing_region(region: str | None, host: str | None) -> None:
    """An IAM token is valid only for the endpoint's own region: refuse another one."""
    named = region_from_host(host)
    if region is not None and named is not None and region != named:
        raise ConfigError(
            f"region={region!r} disagrees with the endpoint {host}, which is in {named!r}: "
            f"the IAM token would be signed for {region} and refused; drop region= (the "
            f"endpoint's region is used) or set region={named!r}"
        )


def _check_routing(v: dict[str, Any]) -> None:
    """The Aurora options: a reader role needs a cluster endpoint whose topology is read."""
    v["topology"] = _values.choice(v["topology"], "topology", TOPOLOGY_MODES)
    if v["role"] is not None:
        v["role"] = _values.choice(v["role"], "role", ROLES)
    v["max_lag"] = _values.number(v["max_lag"], "max_lag", 0, MAX_TIMEOUT)
    v["reader_fallback"] = _values.flag(v["reader_fallback"], "reader_fallback")
    if v["role"] != "reader" or v["host"] is None:
        return
    if v["topology"] != "auto" or v["tunnel"] is not None:
        why = "topology='off'" if v["topology"] != "auto" else "a tunnel"
        raise ConfigError(
            f"role='reader' routes over the Aurora cluster's readers, which {why} rules "
            "out; connect to the reader endpoint (cluster-ro) without role=, or drop "
            f"{why.split('=')[0]}"
        )
    if Cluster.of(v["host"], v["port"]) is None:
        raise ConfigError(
            f"role='reader' needs an Aurora cluster endpoint (NAME.cluster-ID.REGION.rds."
            f"amazonaws.com), not {v['host']!r}; for another database, connect to a "
            "replica's own endpoint"
        )


def _driver(driver: Any, engine: str | None) -> str | None:
    """One of the engine's drivers, or None for the entry point's default."""
    if driver is None:
        return None
    allowed = DRIVERS[engine] if engine else tuple(d for ds in DRIVERS.values() for d in ds)
    return str(_values.choice(driver, "driver", allowed))


def _connect_args(args: Any) -> DriverArgs:
    """The caller's driver arguments, read-only; the adapter judges them where a connector
    is made (`securedb.drivers.check_config`)."""
    if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
        raise ConfigError("connect_args must be a dict of driver keyword arguments")
    return args if isinstance(args, DriverArgs) else DriverArgs(args)


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
