"""PAM service files that hand database logins to the token verifier.

PostgreSQL and MariaDB take a PAM service name per bed run. PgBouncer 1.18 always uses
the service `pgbouncer`, so every bed shares it: it points at a shared directory where
each running bed keeps a link to its verifier configuration, and the verifier accepts a
token that any of them accepts. The last bed to stop removes it. Each file carries a
marker and is removed only by whoever wrote it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

PAM_DIR = Path("/etc/pam.d")
SHARED = Path(tempfile.gettempdir()) / "securedb-bed-pgbouncer"
SHARED_ID = "shared"
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


def join_shared(run_id: str, verifier: Path, conf: Path) -> Path:
    """Register this bed's configuration with the `pgbouncer` service all beds share."""
    SHARED.mkdir(mode=0o755, exist_ok=True)
    shutil.copyfile(verifier, SHARED / "verifier.py")
    log = SHARED / "verifier.log"
    log.touch()
    log.chmod(0o666)  # written by every bed's PgBouncer
    link = SHARED / f"{run_id}.json"
    link.unlink(missing_ok=True)
    link.symlink_to(conf)
    install("pgbouncer", SHARED_ID, SHARED / "verifier.py", SHARED, "proxy")
    return link


def leave_shared(run_id: str) -> None:
    (SHARED / f"{run_id}.json").unlink(missing_ok=True)
    if not any(SHARED.glob("*.json")):
        remove(PAM_DIR / "pgbouncer", SHARED_ID)
        shutil.rmtree(SHARED, ignore_errors=True)
