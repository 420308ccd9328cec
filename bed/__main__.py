"""`python -m bed [--hold]`: bring the bed up and print how to reach each part.

Without `--hold` it stops again at once (a check that the bed starts here); with it,
the bed stays up until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from bed.bed import Bed, can_start


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bed", description=__doc__)
    parser.add_argument("--hold", action="store_true", help="keep the bed up until Ctrl-C")
    args = parser.parse_args()
    reason = can_start()
    if reason:
        print(f"bed: cannot start: {reason}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Bed() as bed:
        print(bed.describe(), flush=True)
        if args.hold:
            print("bed: up; Ctrl-C stops it", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    print("bed: stopped, nothing left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
