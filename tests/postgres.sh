#!/usr/bin/env bash
# The PostgreSQL server the preference tests make throwaway databases on: install and start the
# machine's own when it is missing or stopped, make sure we may log in over TCP, and print the
# URL to use (everything else goes to stderr). Called by `make test` when
# BATCHGATE_TEST_DATABASE_URL is not set.
set -euo pipefail
exec 3>&1 1>&2  # stdout is for the URL alone

apt_install() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "test: apt-get install $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" </dev/null
}

url="postgresql://postgres@127.0.0.1:5432/postgres"
sudo="" as_postgres="runuser -u postgres --" version=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; as_postgres="sudo -u postgres"; fi
if ! command -v pg_ctlcluster >/dev/null || ! command -v pg_isready >/dev/null; then
    apt_install postgresql
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1 || true)"
    if [ -z "$version" ]; then
        version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
        $sudo pg_createcluster "$version" main
    fi
    echo "test: starting PostgreSQL $version/main"
    $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
if ! psql -h 127.0.0.1 -U postgres -w -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
    # A fresh Debian install wants a password over TCP (scram-sha-256): give the role one.
    echo "test: PostgreSQL does not trust 127.0.0.1; setting a password for role postgres"
    (cd / && $as_postgres psql -q -d postgres -c "ALTER ROLE postgres PASSWORD 'batchgate-test'" </dev/null)
    url="postgresql://postgres:batchgate-test@127.0.0.1:5432/postgres"
fi
echo "test: PostgreSQL $(psql "$url" -w -tAc 'SHOW server_version') reachable"
echo "$url" >&3
