"""The securedb command. ``securedb ca refresh`` updates the bundled RDS CA snapshot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from securedb.errors import SecureDBError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="securedb")
    commands = parser.add_subparsers(dest="command", required=True)
    ca = commands.add_parser("ca", help="the bundled RDS CA snapshot")
    ca_commands = ca.add_subparsers(dest="ca_command", required=True)
    refresh = ca_commands.add_parser("refresh", help="download, check and write the bundles")
    refresh.add_argument("--output", type=Path, help="directory to write (default: the package's)")
    refresh.add_argument("--rds-url", help="where AWS publishes global-bundle.pem")
    refresh.add_argument("--ats-url", action="append", help="an Amazon Trust Services root")
    refresh.add_argument("--cafile", help="trust store for the download itself")
    args = parser.parse_args(argv)

    from securedb import ca as ca_module
    from securedb.tls import DATA

    try:
        provenance = ca_module.refresh(
            output=args.output or DATA,
            rds_url=args.rds_url or ca_module.RDS_URL,
            ats_urls=tuple(args.ats_url or ca_module.ATS_URLS),
            cafile=args.cafile,
        )
    except SecureDBError as exc:
        print(f"securedb: {exc}", file=sys.stderr)
        return 1
    for name, facts in provenance.items():
        print(f"{name}: {facts['certificates']} certificates, sha256 {facts['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
