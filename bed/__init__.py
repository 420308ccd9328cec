"""The local RDS-like bed: real servers standing in for RDS, RDS Proxy and AWS's APIs.

The tests, the benchmarks and the demo all start it the same way::

    with Bed() as bed:
        bed.primary.port, bed.mariadb.port, bed.proxy_iam.port, bed.moto.url ...

Everything listens on loopback ports allocated at start, lives in one temporary
directory, and is stopped by pid at the end; the PAM service files it writes to
`/etc/pam.d` are removed. Starting needs root (server processes run as the `postgres`
and `mysql` OS users) and the packages `scripts/setup.sh` installs.
"""
