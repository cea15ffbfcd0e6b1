# shellcheck shell=bash
# Sourced by scripts/backup and scripts/restore: a password file (the password alone, like
# a systemd credential) becomes a temporary pgpass file for libpq, so the password is in
# no command line and no environment variable.

# use_password_file SOURCE PGPASS: writes PGPASS (0600) and exports PGPASSFILE.
use_password_file() {
    local src=$1 dest=$2 pw
    [ -r "$src" ] || { echo "cannot read password file $src" >&2; exit 1; }
    pw=$(cat "$src")
    pw=${pw%$'\r'}
    [ -n "$pw" ] || { echo "password file $src is empty" >&2; exit 1; }
    # pgpass escapes: backslash and colon.
    pw=${pw//\\/\\\\}
    pw=${pw//:/\\:}
    (umask 077 && printf '*:*:*:*:%s\n' "$pw" >"$dest")
    export PGPASSFILE=$dest
    unset PGPASSWORD
}
