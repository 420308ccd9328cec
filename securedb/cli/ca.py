"""``securedb ca check|refresh``: the bundled RDS CA snapshot.

``ca check`` reports on a CA bundle (the bundled RDS snapshot by default): every
certificate, its expiry, and which AWS regions have a valid CA; it exits 1 when a region
named in the bundle has none. ``ca refresh`` (maintainers) replaces the bundled snapshot
with AWS's current trust store; from a mirror (``--rds-url``, ``--ats-url`` not AWS's),
roots the current bundle lacks are refused unless ``--accept-new-roots`` is given, and
each is listed with its sha256 fingerprint either way.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

from securedb.errors import TLSError

if TYPE_CHECKING:
    from securedb import ca

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("ca", help="the bundled RDS CA snapshot: check or refresh it")
    ca_commands = parser.add_subparsers(dest="ca_command", required=True)
    check = ca_commands.add_parser("check", help="list certificates and the regions they cover")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--bundle", type=Path, help="PEM bundle to check (default: the bundled one)")
    check.set_defaults(run=_check)
    refresh = ca_commands.add_parser("refresh", help="download, check and write the bundles")
    refresh.add_argument(
        "--output",
        type=Path,
        help="directory to write (default: the user's data directory, "
        "$XDG_DATA_HOME/securedb/ca or ~/.local/share/securedb/ca; never the package)",
    )
    refresh.add_argument("--rds-url", help="where AWS publishes global-bundle.pem")
    refresh.add_argument("--ats-url", action="append", help="an Amazon Trust Services root")
    refresh.add_argument("--cafile", help="trust store for the download itself")
    refresh.add_argument(
        "--accept-new-roots",
        action="store_true",
        help="from URLs other than AWS's, also write roots the current bundle lacks "
        "(each is listed with its sha256 fingerprint: check them first)",
    )
    refresh.add_argument("--json", action="store_true", help="print the provenance as JSON")
    refresh.set_defaults(run=_refresh)


def _check(args: argparse.Namespace) -> int:
    from securedb import ca
    from securedb.tls import RDS_BUNDLE

    path: Path = args.bundle or RDS_BUNDLE
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise TLSError(
            f"cannot read {path}: {exc.strerror}; pass --bundle with a PEM file"
        ) from None
    report = ca.inspect(pem, datetime.datetime.now(datetime.timezone.utc), source=str(path))
    print(json.dumps(report, indent=2) if args.json else _text(report))
    return 0 if report["ok"] else 1


def _text(report: ca.BundleReport) -> str:
    lines = [_line(cert) for cert in report["certificates"]]
    regions = report["regions"]
    covered = sorted(region for region, counts in regions.items() if counts["valid"])
    missing = sorted(region for region, counts in regions.items() if not counts["valid"])
    lines.append(f"regions with a valid CA ({len(covered)}): {', '.join(covered) or 'none'}")
    lines.append(f"partitions: {', '.join(report['partitions']) or 'none'}")
    if missing:
        lines.append(
            f"regions without a valid CA: {', '.join(missing)}; pass ca_bundle= with AWS's "
            "current global-bundle.pem, or the rds-ca-bundle.pem `securedb ca refresh` writes"
        )
    return "\n".join(lines)


def _line(cert: ca.CertificateReport) -> str:
    state = "EXPIRED" if cert["expired"] else "valid"
    return f"{cert['not_after'][:10]}  {state:7}  {cert['subject']}"


def _refresh(args: argparse.Namespace) -> int:
    from securedb import ca

    output = args.output or ca.user_directory()
    provenance = ca.refresh(
        output=output,
        rds_url=args.rds_url or ca.RDS_URL,
        ats_urls=tuple(args.ats_url or ca.ATS_URLS),
        cafile=args.cafile,
        accept_new_roots=args.accept_new_roots,
    )
    if args.json:
        print(json.dumps(provenance, indent=2))
        return 0
    for name, facts in provenance.items():
        print(f"{name}: {facts['certificates']} certificates, sha256 {facts['sha256']}")
    proxy = provenance[ca.FILES[1]]  # holds every root: the RDS bundle's, then the proxy's
    for root in cast("list[ca.NewRoot]", proxy.get("accepted_new_roots", [])):
        print(f"new root accepted: {ca.describe_root(root)}")
    print(
        f"written to {output}; use it with ca_bundle= or SECUREDB_CA_BUNDLE="
        f"{output / ca.FILES[0]} (RDS Proxy endpoints: {output / ca.FILES[1]})"
    )
    return 0
