"""The PostgreSQL pair: synchronous replication, promotion, and rebuilding the pair."""

from __future__ import annotations

import pytest

from bed.bed import Bed

pytestmark = [pytest.mark.bed, pytest.mark.slow]


@pytest.mark.parametrize("round_", [1, 2])
def test_promote_then_rebuild(bed: Bed, round_: int) -> None:
    """The same failover scenario runs twice: rebuild_pair restores the starting shape."""
    primary, replica = bed.primary, bed.replica
    assert not primary.is_in_recovery()
    assert replica.is_in_recovery()
    primary.set_synchronous(replica.name)
    primary.psql(
        f"CREATE TABLE IF NOT EXISTS rounds (n int); INSERT INTO rounds VALUES ({round_})",
        database="app",
    )
    # Synchronous: the acknowledged commit is already on the replica.
    assert replica.psql("SELECT count(*) FROM rounds", database="app").strip() == "1"

    primary.stop("immediate")
    replica.promote()
    assert not replica.is_in_recovery()
    replica.psql("INSERT INTO rounds VALUES (100)", database="app")

    bed.rebuild_pair()
    assert not primary.is_in_recovery()
    assert replica.is_in_recovery()
    assert primary.psql("SELECT count(*) FROM rounds WHERE n = 100", database="app").strip() == "0"
    primary.psql("DROP TABLE rounds", database="app")
