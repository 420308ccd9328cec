"""The soak's schedule: what happens when, scaled to the run's duration.

For the default 10 minutes: one worker of each app killed at 0:30 and 0:48 (so that
their replacements are warm by the reference sample), the reference sample ("minute 2")
at 2:00, the secret rotated every 2 minutes, the replica
partitioned for 20 s from 3:30, the writer flipped at 7:30. A shorter run keeps the
proportions; its rotation comes every third of the run (every 30 s in 90 s).
"""

from __future__ import annotations

import dataclasses

IAM_TOKEN_TTL = 60  # seconds: securedb refreshes a token two thirds into its life
SECRET_TTL = 60  # seconds a fetched secret is served before it is fetched again
PARTITION = 20.0  # seconds the replica is cut off
ROTATION_STEP = 2.0  # seconds between createSecret, setSecret and finishSecret
FULL = 600.0  # the run the proportions are written for


@dataclasses.dataclass(frozen=True)
class Action:
    at: float  # seconds from the start of the load
    name: str  # kill_django, kill_fastapi, reference, rotate_create, rotate_set,
    # rotate_finish, partition, heal, flip


def schedule(duration: float) -> list[Action]:
    """Every action of a run of `duration` seconds, in time order."""
    every = 120.0 if duration >= FULL * 0.8 else duration / 3
    actions = [
        Action(0.05 * duration, "kill_django"),
        Action(0.08 * duration, "kill_fastapi"),
        Action(0.20 * duration, "reference"),
        Action(0.35 * duration, "partition"),
        Action(0.35 * duration + PARTITION, "heal"),
        Action(0.75 * duration, "flip"),
    ]
    start = every
    while start + 2 * ROTATION_STEP < duration - 5:
        for step, name in enumerate(("rotate_create", "rotate_set", "rotate_finish")):
            actions.append(Action(start + step * ROTATION_STEP, name))
        start += every
    return sorted(actions, key=lambda a: a.at)


def sample_every(duration: float) -> float:
    """Seconds between two /proc samples of the workers."""
    return min(5.0, max(1.0, duration / 60))
