#!/bin/sh
# Start PostgreSQL in $PGDATA, making the cluster there on the first start:
#   POSTGRES_PASSWORD  required: the password of POSTGRES_USER (logins from the network)
#   POSTGRES_USER      the superuser, default pageholder
#   POSTGRES_DB        a database made for it, default pageholder
# Local (socket) logins are trusted; every TCP login needs the password (scram-sha-256).
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
USER_NAME=${POSTGRES_USER:-pageholder}
DB_NAME=${POSTGRES_DB:-pageholder}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
SOCKETS=/tmp

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    "$BIN/initdb" --pgdata="$PGDATA" --username="$USER_NAME" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-locale >/dev/null
    rm -f "$pwfile"
    printf '%s\n' 'host all all 0.0.0.0/0 scram-sha-256' 'host all all ::/0 scram-sha-256' \
        >>"$PGDATA/pg_hba.conf"
    if [ "$DB_NAME" != postgres ]; then
        echo "CREATE DATABASE \"$DB_NAME\"" |
            "$BIN/postgres" --single -D "$PGDATA" -c unix_socket_directories="$SOCKETS" postgres >/dev/null
    fi
    echo "pageholder-postgres: made a cluster in $PGDATA (user $USER_NAME, database $DB_NAME)"
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories="$SOCKETS"
