"""PAM service files that hand database logins to the token verifier.

PostgreSQL and MariaDB take a PAM service name per bed run; PgBouncer 1.18 always uses
the service `pgbouncer`, so only one bed with a PgBouncer IAM front end runs at a time.
Each file carries a marker with the run id and is removed only by the run that wrote it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

PAM_DIR = Path("/etc/pam.d")
MARKER = "# written by the securedb test bed, run "
# Debian's libpam-python installs outside the multiarch module directory.
MODULE_DIRS = (
    "/lib/security",
    "/usr/lib/security",
    "/lib/x86_64-linux-gnu/security",
    "/usr/lib/x86_64-linux-gnu/security",
    "/lib/aarch64-linux-gnu/security",
)


def pam_python() -> Path | None:
    return next((p for d in MODULE_DIRS if (p := Path(d, "pam_python.so")).exists()), None)


def service_line(verifier: Path, conf: Path, group: str) -> str:
    return (
        f"auth required {pam_python()} {verifier} {conf} {group}\naccount required pam_permit.so\n"
    )


def install(service: str, run_id: str, verifier: Path, conf: Path, group: str) -> Path:
    path = PAM_DIR / service
    path.write_text(f"{MARKER}{run_id}\n{service_line(verifier, conf, group)}")
    path.chmod(0o644)
    return path


def remove(path: Path, run_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.read_text().startswith(f"{MARKER}{run_id}\n"):
            path.unlink()
