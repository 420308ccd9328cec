"""Concurrent IAM logins to MariaDB.

PAM runs the token verifier through pam_python, which crashes the server when two of
its threads run PAM at once; the bed's MariaDB runs each login's PAM in a helper process
of its own (the PAM plugin v2), so logins at the same moment must all go through.
"""

from __future__ import annotations

import concurrent.futures
import ssl
import threading

import pymysql
import pytest

from bed import mariadb, tokens
from bed.bed import Bed

pytestmark = pytest.mark.bed

LOGINS = 30
ROUNDS = 2


def verified_logins(bed: Bed) -> list[str]:
    """The verifier's log lines for MariaDB logins of the IAM user that it accepted."""
    lines = bed.verifier_log.read_text().splitlines()
    return [line for line in lines if line.split()[1:] == ["mysql", mariadb.IAM_USER, "ok"]]


def test_concurrent_iam_logins(bed: Bed) -> None:
    token = tokens.mint("127.0.0.1", bed.mariadb.port, mariadb.IAM_USER)
    context = ssl.create_default_context(cafile=str(bed.pki.ca))

    def login(start: threading.Barrier) -> str:
        start.wait(timeout=30)
        conn = pymysql.connect(
            host="127.0.0.1",
            port=bed.mariadb.port,
            user=mariadb.IAM_USER,
            password=token,
            database=mariadb.DATABASE,
            connect_timeout=30,
            ssl=context,
        )
        with conn, conn.cursor() as cur:
            cur.execute("SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
            row = cur.fetchone()
            assert row is not None
            return str(row[0])

    before = len(verified_logins(bed))
    with concurrent.futures.ThreadPoolExecutor(LOGINS) as pool:
        for _ in range(ROUNDS):
            start = threading.Barrier(LOGINS)
            users = list(pool.map(login, [start] * LOGINS))
            assert users == [mariadb.IAM_USER] * LOGINS
            assert bed.mariadb.proc is not None
            assert bed.mariadb.proc.poll() is None, "MariaDB died during concurrent IAM logins"
    assert len(verified_logins(bed)) - before == LOGINS * ROUNDS
