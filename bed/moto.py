"""moto's server on a loopback port: Secrets Manager, STS, RDS and EC2 for boto3."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from bed import procs

ACCESS_KEY_ID = "AKIASECUREDBBEDTEST1"
SECRET_ACCESS_KEY = "securedb-bed-secret-access-key-000000000"


class Moto:
    def __init__(self, root: Path) -> None:
        self.log = root / "moto.log"
        self.port = procs.free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = procs.spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)], self.log
        )

    def wait_ready(self) -> None:
        procs.wait_until(self._answers, "moto server", self.proc, self.log)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=0.5):
                return True
        except OSError:
            return False

    def reset(self) -> None:
        """Forget every resource, so each test starts from an empty account."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def stop(self) -> None:
        procs.stop(self.proc)
        self.proc = None
