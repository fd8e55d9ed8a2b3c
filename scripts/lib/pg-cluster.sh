# shellcheck shell=bash
# A throwaway PostgreSQL cluster for tests and benchmarks. Source this file (it sources
# ensure-packages.sh for pg_bin_dir), then:
#
#   pg_cluster_start   initdb + start on a free loopback port; exports
#                      HISCALE_TEST_POSTGRES=postgres://postgres@127.0.0.1:PORT/ (a server URL:
#                      tests create their own databases), PG_CLUSTER_PORT, PG_CLUSTER_VERSION,
#                      PG_CLUSTER_DURABILITY.
#                      Installs EXIT/INT/TERM/HUP traps that call pg_cluster_stop, so the
#                      cluster is stopped and its directory deleted on every way out; a caller
#                      that needs its own EXIT trap must call pg_cluster_stop from it.
#   pg_cluster_stop    stops the cluster and deletes its directory; safe to call twice.
#
# Durability is off (fsync, synchronous_commit, full_page_writes): a crash loses the cluster,
# which is thrown away anyway. HISCALE_PG_DURABLE=1 keeps PostgreSQL's durable defaults instead.
# Benchmarks must state which (PG_CLUSTER_DURABILITY says it) and use the same settings on both
# sides of a comparison.
#
# PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` user
# (commands run through `runuser -u postgres --`); as any other user it runs as that user.
#
# Each cluster lives in its own fresh directory BASE/hiscale-pg.XXXXXX, BASE being /tmp (which
# the postgres user can reach) unless HISCALE_PG_TMP names another (without spaces). Directories left behind
# by a run that was killed outright (SIGKILL, power loss) are reaped at the next start.

_PG_CLUSTER_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/ensure-packages.sh
source "$_PG_CLUSTER_LIB_DIR/ensure-packages.sh"

PG_CLUSTER_DIR=${PG_CLUSTER_DIR:-}
PG_CLUSTER_BIN=${PG_CLUSTER_BIN:-}
PG_CLUSTER_PORT=${PG_CLUSTER_PORT:-}
PG_CLUSTER_VERSION=${PG_CLUSTER_VERSION:-}
PG_CLUSTER_DURABILITY=${PG_CLUSTER_DURABILITY:-}

_pg_log() { printf '[pg-cluster] %s\n' "$*" >&2; }

_pg_is_root() { [[ $(id -u) -eq 0 ]]; }

_pg_base() {
    if [[ -n ${HISCALE_PG_TMP:-} ]]; then
        printf '%s\n' "$HISCALE_PG_TMP"
    elif _pg_is_root; then
        printf '/tmp\n' # not $TMPDIR: the postgres user must be able to reach the directory
    else
        printf '%s\n' "${TMPDIR:-/tmp}"
    fi
}

# _pg_run DIR CMD... : runs CMD in DIR as the cluster's owner (postgres when we are root).
_pg_run() {
    local dir=$1
    shift
    if _pg_is_root; then
        (cd "$dir" && runuser -u postgres -- env LC_ALL=C "$@")
    else
        (cd "$dir" && env LC_ALL=C "$@")
    fi
}

# _pg_start_time PID : the process's start time in clock ticks (guards against PID reuse).
_pg_start_time() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) } # fields after the command name, which may hold spaces
    # shellcheck disable=SC2086
    set -- $stat
    printf '%s\n' "${20}" # field 22 of the whole line
}

# _pg_owner_alive DIR : whether the shell that created DIR is still running.
_pg_owner_alive() {
    local pid start now
    read -r pid start 2>/dev/null <"$1/owner" || return 1
    [[ -n $pid && -n $start ]] || return 1
    now=$(_pg_start_time "$pid") || return 1
    [[ $now == "$start" ]]
}

# _pg_reap_stale : stops and deletes clusters whose creating shell is gone.
_pg_reap_stale() {
    local base dir
    base=$(_pg_base)
    for dir in "$base"/hiscale-pg.*; do
        [[ -d $dir && ! -L $dir ]] || continue
        if [[ -f $dir/owner ]]; then
            _pg_owner_alive "$dir" && continue
        else
            # The owner file is written right after mktemp; without one, only an old directory
            # is certainly abandoned.
            [[ -n $(find "$dir" -maxdepth 0 -mmin +5 2>/dev/null) ]] || continue
        fi
        _pg_log "removing stale cluster directory $dir"
        _pg_halt "$dir"
        rm -rf -- "$dir" || true
    done
}

# _pg_halt DIR : stops the postmaster of the cluster in DIR/data, if one runs.
_pg_halt() {
    local dir=$1 bin pid
    [[ -f $dir/data/postmaster.pid ]] || return 0
    bin=${PG_CLUSTER_BIN:-$(pg_bin_dir 2>/dev/null || true)}
    if [[ -n $bin ]]; then
        _pg_run "$dir" "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 20 stop >/dev/null 2>&1 && return 0
        _pg_run "$dir" "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop >/dev/null 2>&1 && return 0
    fi
    # Last resort: the postmaster's PID is the first line of postmaster.pid, and it is killed
    # only if it really is a postgres process working on this directory.
    read -r pid 2>/dev/null <"$dir/data/postmaster.pid" || return 0
    if [[ -n $pid ]] && grep -qa -- "$dir/data" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

# _pg_free_port : prints a loopback TCP port nobody listens on.
_pg_free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null && return 0
    fi
    local port try
    for try in $(seq 1 200); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
        # A refused connection means the port is free.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
        : "$try"
    done
    return 1
}

pg_cluster_start() {
    if [[ -n $PG_CLUSTER_DIR ]]; then
        _pg_log "a cluster is already running in $PG_CLUSTER_DIR"
        return 1
    fi
    PG_CLUSTER_BIN=$(pg_bin_dir) || {
        _pg_log "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb); run ensure_postgres_binaries"
        return 1
    }
    if _pg_is_root && ! id -u postgres >/dev/null 2>&1; then
        _pg_log "running as root but there is no postgres user; run ensure_postgres_binaries"
        return 1
    fi
    # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> 15.18
    local _word1 _word2
    read -r _word1 _word2 PG_CLUSTER_VERSION _ < <("$PG_CLUSTER_BIN/postgres" --version)

    _pg_reap_stale

    # From here on, every way out removes what was made.
    trap 'pg_cluster_stop' EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM

    local base started
    started=$(date +%s%N)
    base=$(_pg_base)
    if [[ $base == *[[:space:]]* ]]; then
        _pg_log "the cluster's base directory must not contain spaces: $base"
        return 1
    fi
    PG_CLUSTER_DIR=$(mktemp -d "$base/hiscale-pg.XXXXXX")
    printf '%s %s\n' "$$" "$(_pg_start_time "$$")" >"$PG_CLUSTER_DIR/owner"
    chmod 0700 "$PG_CLUSTER_DIR"
    if _pg_is_root; then
        chown postgres: "$PG_CLUSTER_DIR"
    fi

    if ! _pg_run "$PG_CLUSTER_DIR" "$PG_CLUSTER_BIN/initdb" -D "$PG_CLUSTER_DIR/data" \
        --auth=trust -U postgres -E UTF8 --no-locale --no-sync \
        >"$PG_CLUSTER_DIR/initdb.log" 2>&1; then
        _pg_log "initdb failed:"
        cat "$PG_CLUSTER_DIR/initdb.log" >&2
        return 1
    fi

    local durability='-c fsync=off -c synchronous_commit=off -c full_page_writes=off'
    PG_CLUSTER_DURABILITY='fsync=off synchronous_commit=off full_page_writes=off'
    if [[ ${HISCALE_PG_DURABLE:-0} == 1 ]]; then
        durability=''
        PG_CLUSTER_DURABILITY='durable (PostgreSQL defaults: fsync=on synchronous_commit=on)'
    fi

    # The port is free when chosen but could be taken before the postmaster binds it: retry.
    local attempt port=''
    for attempt in 1 2 3 4 5; do
        port=$(_pg_free_port) || { _pg_log "found no free loopback port"; return 1; }
        rm -f "$PG_CLUSTER_DIR/postgres.log"
        if _pg_run "$PG_CLUSTER_DIR" "$PG_CLUSTER_BIN/pg_ctl" -D "$PG_CLUSTER_DIR/data" \
            -l "$PG_CLUSTER_DIR/postgres.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_CLUSTER_DIR $durability -c max_connections=300" \
            start >"$PG_CLUSTER_DIR/pg_ctl.log" 2>&1; then
            break
        fi
        if grep -q 'could not bind\|Address already in use' "$PG_CLUSTER_DIR/postgres.log" 2>/dev/null \
            && [[ $attempt -lt 5 ]]; then
            _pg_log "port $port was taken, trying another"
            _pg_halt "$PG_CLUSTER_DIR"
            continue
        fi
        _pg_log "PostgreSQL did not start:"
        cat "$PG_CLUSTER_DIR/pg_ctl.log" "$PG_CLUSTER_DIR/postgres.log" >&2 2>/dev/null || true
        return 1
    done

    local ready=''
    for attempt in $(seq 1 100); do
        if "$PG_CLUSTER_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; then
            ready=1
            break
        fi
        sleep 0.1
        : "$attempt"
    done
    if [[ -z $ready ]]; then
        _pg_log "PostgreSQL on port $port is not ready after 10 s:"
        cat "$PG_CLUSTER_DIR/postgres.log" >&2 || true
        return 1
    fi

    PG_CLUSTER_PORT=$port
    export PG_CLUSTER_PORT PG_CLUSTER_VERSION PG_CLUSTER_DURABILITY
    export HISCALE_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/"
    _pg_log "PostgreSQL $PG_CLUSTER_VERSION ($PG_CLUSTER_BIN) on 127.0.0.1:$port, $PG_CLUSTER_DURABILITY, data in $PG_CLUSTER_DIR, ready in $((($(date +%s%N) - started) / 1000000)) ms"
}

pg_cluster_stop() {
    local dir=$PG_CLUSTER_DIR
    [[ -n $dir ]] || return 0
    PG_CLUSTER_DIR=''
    if [[ -d $dir ]]; then
        _pg_halt "$dir" || true
        rm -rf -- "$dir" || true
    fi
    unset HISCALE_TEST_POSTGRES PG_CLUSTER_PORT
    _pg_log "stopped and removed $dir"
    return 0
}
