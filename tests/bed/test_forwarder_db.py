"""The forwarder in front of real servers: a tunnel, a DNS flip, a dropped network."""

from __future__ import annotations

import psycopg
import pytest

from bed import certs, postgres
from bed.bed import Bed

pytestmark = pytest.mark.bed


def connect_through(bed: Bed, port: int) -> psycopg.Connection:
    """Verify the cluster endpoint's name while the socket goes to the forwarder."""
    return psycopg.connect(
        host=certs.PG_CLUSTER,
        hostaddr="127.0.0.1",
        port=port,
        dbname="app",
        user=postgres.APP_USER,
        password=postgres.APP_PASSWORD,
        sslmode="verify-full",
        sslrootcert=str(bed.pki.ca),
        gssencmode="disable",
        connect_timeout=5,
    )


def in_recovery(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    assert row is not None
    return bool(row[0])


def test_switch_moves_new_connections_only(bed: Bed) -> None:
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    with connect_through(bed, fwd.port) as before:
        assert not in_recovery(before)
        fwd.switch(("127.0.0.1", bed.replica.port))
        with connect_through(bed, fwd.port) as after:
            assert in_recovery(after)
        assert not in_recovery(before)


def test_drop_breaks_live_connections(bed: Bed) -> None:
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    with connect_through(bed, fwd.port) as conn:
        fwd.drop()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with connect_through(bed, fwd.port) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_refuse_then_accept(bed: Bed) -> None:
    fwd = bed.forwarder(("127.0.0.1", bed.primary.port))
    fwd.refuse()
    with pytest.raises(psycopg.OperationalError, match="refused"):
        connect_through(bed, fwd.port)
    fwd.accept()
    with connect_through(bed, fwd.port) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
