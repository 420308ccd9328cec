#!/usr/bin/env bash
# Set up everything securedb's demo, tests and benchmarks need, idempotently.
#
# As root on Debian it installs the database servers the local bed runs
# (PostgreSQL 15, MariaDB, PgBouncer) and pam_python for the token verifier.
# Without root it checks they are there and says what is missing.
# Then it makes a virtual environment in .venv with securedb and its dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postgresql-15 mariadb-server pgbouncer libpam-python iptables python3)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "setup: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # policy-rc.d keeps the packages from starting system-wide services of their own.
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    else
        echo "setup: missing system packages: ${missing[*]}" >&2
        echo "setup: install them as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
fi
# The benchmark peers (the AWS wrapper, aws-secretsmanager-caching, matplotlib) go into
# this development environment only; they are never securedb dependencies.
stamp=.venv/.securedb-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp || benchmarks/requirements.txt -nt $stamp ]]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]' -r benchmarks/requirements.txt
    touch "$stamp"
fi
