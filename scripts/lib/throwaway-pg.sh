# shellcheck shell=bash
# Sourced by scripts/test-package, scripts/lib/demo-full and scripts/lib/test-packages.sh:
# a throwaway PostgreSQL cluster with SCRAM password logins on a free 127.0.0.1 port, kept
# in a directory of the caller's (which removes it).

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The newest installed PostgreSQL server's bin directory (empty when there is none).
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# pg_start DIR SUPERUSER_PASSWORD_FILE: initdb DIR/pg (superuser `postgres` with that
# password) and start it, socket in DIR; sets pg_port. initdb refuses root: as root the
# cluster belongs to the `postgres` user (made by Debian's postgresql package) and DIR is
# handed to it.
pg_start() {
    local dir=$1
    pg_dir=$dir/pg
    pg_su_pwfile=$2
    pg_port=$(free_port)
    pg_as=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$dir"
        pg_as=(runuser -u postgres --)
    fi
    # initdb reads the password as the cluster's owner: a copy it may read, gone at once.
    install -m 0400 -o "$(stat -c %U "$dir")" "$pg_su_pwfile" "$dir/initdb.pw"
    "${pg_as[@]}" "$(pg_bin)/initdb" -D "$pg_dir" -U postgres --auth=scram-sha-256 \
        --pwfile="$dir/initdb.pw" >/dev/null
    rm -f "$dir/initdb.pw"
    "${pg_as[@]}" "$(pg_bin)/pg_ctl" -D "$pg_dir" -w -l "$dir/pg.log" \
        -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
}

# Stops the cluster pg_start started, if it runs.
pg_stop() {
    [ -n "${pg_dir:-}" ] && [ -e "$pg_dir/postmaster.pid" ] &&
        "${pg_as[@]}" "$(pg_bin)/pg_ctl" -D "$pg_dir" -m fast stop >/dev/null 2>&1
    return 0
}

# psql as the superuser over TCP (password from the file given to pg_start).
psql_su() {
    PGPASSWORD=$(cat "$pg_su_pwfile") "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$pg_port" -U postgres "$@"
}
