#!/usr/bin/env bash
# Run the test suite with every process's wall clock moved:
#   scripts/clock.sh +400d [pytest args]      (`make test-clock SHIFT=+3y` does the same)
#
# libfaketime is preloaded into pytest and so into everything it starts: the bed's
# PostgreSQL, MariaDB, PgBouncer, moto and the token verifier they run. Only the wall clock
# moves; monotonic clocks stay real, so timeouts and sleeps last what they say. The library
# comes from the `libfaketime` package on PyPI (a dev dependency): Debian's 0.9.10 fails
# every monotonic sleep with EINVAL when the monotonic clock is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
shift_by=${1:?usage: scripts/clock.sh OFFSET [pytest args], OFFSET as libfaketime reads it: +400d, +3y}
shift
bash scripts/setup.sh
package=$(.venv/bin/python -c 'import importlib.util; print(importlib.util.find_spec("libfaketime").submodule_search_locations[0])')
export LD_PRELOAD=$package/vendor/libfaketime/src/libfaketime.so.1
export FAKETIME="$shift_by" FAKETIME_DONT_FAKE_MONOTONIC=1 NO_FAKE_STAT=1
echo "clock: moved by $shift_by, now $(date -u +%FT%TZ)"
exec .venv/bin/python -m pytest "$@"
