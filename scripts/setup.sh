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

# The bed's MariaDB runs each PAM login in a helper process, auth_pam_tool (the PAM
# plugin v2): pam_python crashes the server when several of its threads run PAM at once.
# Some installs lack the tool although the package ships it, so keep a copy from Debian's
# own package of the installed version in a git-ignored cache; bed/mariadb.py looks for
# it there, under the server's version, and never needs the system's file.
mariadbd=$(PATH="$PATH:/usr/sbin" command -v mariadbd)
server_info=$("$mariadbd" --no-defaults --verbose --help 2>/dev/null)
server_version=$(awk '/^version / {print $2}' <<<"$server_info")
plugin_dir=$(awk '/^plugin-dir / {print $2}' <<<"$server_info")
tool_cache=.cache/bed/mariadb-$server_version
if [[ -z $server_version || -z $plugin_dir ]]; then
    echo "setup: cannot read the version and plugin-dir of $mariadbd" >&2
    exit 1
fi
if [[ ! -f $tool_cache/auth_pam_tool ]]; then
    mkdir -p "$tool_cache"
    tool_tmp=$(mktemp -d)
    system_tool=$plugin_dir/auth_pam_tool_dir/auth_pam_tool
    if [[ -f $system_tool ]]; then
        cp "$system_tool" "$tool_tmp/auth_pam_tool"
    else
        package_version=$(dpkg-query -W -f='${Version}' mariadb-server)
        echo "setup: fetching auth_pam_tool from mariadb-server $package_version"
        # apt's sandbox user downloads into the directory, so it must be able to write there.
        if id _apt >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then chown _apt "$tool_tmp"; fi
        fetch() { (cd "$tool_tmp" && apt-get download -qq "mariadb-server=$package_version"); }
        if ! fetch && [[ $(id -u) == 0 ]]; then
            apt-get update -qq && fetch || true
        fi
        deb=$(find "$tool_tmp" -maxdepth 1 -name 'mariadb-server_*.deb' | head -n 1)
        if [[ -z $deb ]]; then
            echo "setup: could not download mariadb-server=$package_version;" \
                "upgrade mariadb-server and run this again" >&2
            rm -rf "$tool_tmp"
            exit 1
        fi
        dpkg-deb -x "$deb" "$tool_tmp/root"
        cp "$tool_tmp/root$system_tool" "$tool_tmp/auth_pam_tool"
    fi
    install -m 0755 "$tool_tmp/auth_pam_tool" "$tool_cache/auth_pam_tool"
    rm -rf "$tool_tmp"
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
