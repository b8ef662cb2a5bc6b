#!/usr/bin/env bash
# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared settings and helpers for scripts/infra/*.sh (sourced, not run).
# Local infrastructure without Docker: PostgreSQL (FerretDB's backend), FerretDB, Kafka, stripe-mock.
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INFRA_DIR/../.." && pwd)"
DEPLOY_DIR="$REPO_ROOT/deploy/infra"

# ---- directories -------------------------------------------------------------------------------
CACHE_DIR="${AILAB_CACHE_DIR:-$HOME/.cache/ailab}"
DATA_DIR="${AILAB_DATA_DIR:-$REPO_ROOT/.data}"
# Absolute paths: they end up in config files and in the processes' command lines.
case "$CACHE_DIR" in /*) ;; *) CACHE_DIR="$PWD/$CACHE_DIR" ;; esac
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$PWD/$DATA_DIR" ;; esac
# Where PostgreSQL's data goes when the postgres OS user cannot reach $DATA_DIR (pg_choose_dirs).
PG_ALT_ROOT="${AILAB_PG_ALT_ROOT:-/var/tmp}"
LOG_DIR="$DATA_DIR/logs"
RUN_DIR="$DATA_DIR/run"
KAFKA_DIR="$DATA_DIR/kafka"

# ---- versions (single source of truth: the pom and the go.mod) ----------------------------------
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$DEPLOY_DIR/kafka/pom.xml")"
FERRETDB_VERSION="$(awk '$1 == "github.com/FerretDB/FerretDB" { sub(/^v/, "", $2); print $2 } \
    $1 == "require" && $2 == "github.com/FerretDB/FerretDB" { sub(/^v/, "", $3); print $3 }' \
    "$DEPLOY_DIR/ferretdb/go.mod" | head -n1)"
STRIPE_MOCK_VERSION="${AILAB_STRIPE_MOCK_VERSION:-v0.203.0}"

KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
FERRETDB_BIN="$CACHE_DIR/bin/ferretdb-$FERRETDB_VERSION"
STRIPE_MOCK_BIN="$CACHE_DIR/bin/stripe-mock"

# ---- ports (all listeners bind 127.0.0.1 only) -------------------------------------------------
PG_PORT="${AILAB_PG_PORT:-54329}"
MONGO_PORT="${AILAB_MONGO_PORT:-27017}"
KAFKA_PORT="${AILAB_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${AILAB_KAFKA_CONTROLLER_PORT:-9093}"
STRIPE_MOCK_PORT="${AILAB_STRIPE_MOCK_PORT:-12111}"
STRIPE_MOCK_HTTPS_PORT="${AILAB_STRIPE_MOCK_HTTPS_PORT:-12112}"

FERRETDB_HANDLER="${AILAB_FERRETDB_HANDLER:-postgresql}"   # postgresql (default) | sqlite
WAIT_TIMEOUT="${AILAB_WAIT_TIMEOUT:-120}"                   # seconds, per component
KAFKA_HEAP_OPTS="${AILAB_KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}"

KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT"
MONGODB_URI="mongodb://127.0.0.1:$MONGO_PORT/"
STRIPE_API_BASE="http://127.0.0.1:$STRIPE_MOCK_PORT"
FERRETDB_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/ferretdb"
FERRETDB_SQLITE_DIR="$DATA_DIR/ferretdb-sqlite"

# ---- output ------------------------------------------------------------------------------------
log() { printf '[infra] %s\n' "$*"; }
warn() { printf '[infra] WARNING: %s\n' "$*" >&2; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [[ $EUID -eq 0 ]]; }

# Runs a command as root (directly, or through passwordless sudo).
as_root() {
    if is_root; then "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
    else die "need root for: $*"
    fi
}

apt_install() {
    log "apt: installing $*..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---- processes ---------------------------------------------------------------------------------
pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# What a live process of each component has in its command line (guards against pid reuse).
cmd_marker() {
    case "$1" in
        postgres) printf 'postgres' ;;
        ferretdb) printf 'ferretdb-%s' "$FERRETDB_VERSION" ;;
        kafka) printf 'kafka.Kafka' ;;
        stripe-mock) printf 'stripe-mock' ;;
    esac
}

# Prints the pid of a running component, or fails.
running_pid() {
    local name="$1" pid cmdline
    [[ -f "$(pid_file "$name")" ]] || return 1
    pid="$(head -n1 "$(pid_file "$name")" 2>/dev/null)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"$(cmd_marker "$name")"* ]] || return 1
    printf '%s' "$pid"
}

# Starts a daemon detached from this shell's session; output appended to $LOG_DIR/<name>.log.
start_daemon() {
    local name="$1"; shift
    local logf="$LOG_DIR/$name.log"
    printf '\n==== %s start %s ====\n' "$name" "$(date -u +%FT%TZ)" >>"$logf"
    # No job control here, so the background child is not a group leader and setsid execs in
    # place: $! is the daemon's own pid.
    (cd "$DATA_DIR" && exec 8>&- 9>&- && exec setsid nohup "$@" >>"$logf" 2>&1 </dev/null) &
    printf '%s\n' "$!" >"$(pid_file "$name")"
}

# Sends SIGTERM, waits up to $2 seconds, then SIGKILL.
stop_pid() {
    local pid="$1" grace="$2" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    warn "pid $pid still alive after ${grace}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# wait_until <label> <probe> [args...]: bounded wait (AILAB_WAIT_TIMEOUT) with progress dots.
# The probe returns 0 when ready, 86 when it is pointless to keep waiting, anything else to retry.
wait_until() {
    local label="$1"; shift
    local deadline=$((SECONDS + WAIT_TIMEOUT)) rc
    printf '[infra] %s: waiting' "$label"
    while :; do
        rc=0; "$@" || rc=$?
        if ((rc == 0)); then printf ' ok\n'; return 0; fi
        if ((rc == 86)); then printf ' process exited\n'; return 1; fi
        if ((SECONDS >= deadline)); then printf ' timed out after %ss\n' "$WAIT_TIMEOUT"; return 1; fi
        printf '.'
        sleep 1
    done
}

# ---- PostgreSQL (FerretDB's backend) -----------------------------------------------------------
# Newest installed server, or the one matching an existing cluster's PG_VERSION when available.
pg_bin_dir() {
    local d v
    if [[ -n "${PG_DATA:-}" && -f "$PG_DATA/PG_VERSION" ]]; then
        v="$(cat "$PG_DATA/PG_VERSION")"
        if [[ -x "/usr/lib/postgresql/$v/bin/postgres" ]]; then printf '%s' "/usr/lib/postgresql/$v/bin"; return 0; fi
    fi
    d="$(printf '%s\n' /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n1)"
    [[ -x "$d" ]] || return 1
    printf '%s' "${d%/postgres}"
}

# Runs a command as the OS user that owns the cluster: `postgres` when we are root (the server
# refuses to run as root), ourselves otherwise. From / so the user needs no access to $PWD.
as_pg() {
    if is_root; then (cd / && runuser -u postgres -- "$@")
    else (cd / && "$@")
    fi
}

# Picks PG_DATA and PG_SOCK_DIR. Default: $DATA_DIR/postgres and $DATA_DIR/run. When the postgres
# OS user cannot reach $DATA_DIR (e.g. a clone under /root, mode 700) or the socket path would be
# too long for a Unix socket, use $PG_ALT_ROOT/ailab-pg-<hash of $DATA_DIR>/{data,run} instead.
pg_choose_dirs() {
    local alt hash
    hash="$(printf '%s' "$DATA_DIR" | sha256sum | cut -c1-12)"
    PG_ALT_BASE="$PG_ALT_ROOT/ailab-pg-$hash"
    alt="$PG_ALT_BASE"
    if [[ -f "$DATA_DIR/postgres/PG_VERSION" ]]; then
        PG_DATA="$DATA_DIR/postgres"; PG_SOCK_DIR="$RUN_DIR"
    elif [[ -f "$alt/data/PG_VERSION" ]]; then
        PG_DATA="$alt/data"; PG_SOCK_DIR="$alt/run"
    elif pg_user_can_reach "$DATA_DIR" && ((${#RUN_DIR} + 20 < 107)); then
        PG_DATA="$DATA_DIR/postgres"; PG_SOCK_DIR="$RUN_DIR"
    else
        PG_DATA="$alt/data"; PG_SOCK_DIR="$alt/run"
    fi
}

# The data directories $PG_ALT_ROOT/ailab-pg-* belong to a checkout's $DATA_DIR (recorded in
# their `owner` file). A checkout deleted without `down.sh --purge` (a fresh clone CI ran in, say)
# leaves its directory behind, ~0.7 GB each: remove those whose owner is gone and whose server is
# not running. Directories without an owner file (made before it was written) are left alone.
pg_prune_orphans() {
    local dir owner pid
    for dir in "$PG_ALT_ROOT"/ailab-pg-*; do
        [[ -d "$dir" && -f "$dir/owner" && "$dir" != "$PG_ALT_BASE" ]] || continue
        owner="$(head -n 1 "$dir/owner")"
        [[ -n "$owner" && ! -e "$owner" ]] || continue
        pid="$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)"
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then continue; fi
        log "postgres: removing $dir (its checkout's data directory $owner is gone)"
        rm -rf "$dir"
    done
}

pg_user_can_reach() {
    [[ -d "$1" ]] || return 1
    is_root || return 0
    runuser -u postgres -- test -x "$1" -a -r "$1" 2>/dev/null
}

pg_pid() {
    local pid
    [[ -f "$PG_DATA/postmaster.pid" ]] || return 1
    pid="$(head -n1 "$PG_DATA/postmaster.pid")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *postgres* ]] || return 1
    printf '%s' "$pid"
}

# ---- probes (real protocol requests) -----------------------------------------------------------
probe_postgres() {
    local bin
    bin="$(pg_bin_dir)" || return 1
    "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1
}

probe_ferretdb() {
    if command -v python3 >/dev/null; then
        python3 "$INFRA_DIR/mongo_ping.py" 127.0.0.1 "$MONGO_PORT" --timeout 3 --quiet
    else
        port_open "$MONGO_PORT"   # no python3: TCP only
    fi
}

# Runs one of Kafka's Java tools from the cached jars, e.g.
#   kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" --list
kafka_tool() {
    timeout "${KAFKA_TOOL_TIMEOUT:-60}" java -Xms32m -Xmx256m -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$KAFKA_HOME/tools-log4j2.properties" \
        -cp "$KAFKA_LIBS/*" "$@"
}

# A metadata request (ListTopics) through Kafka's own TopicCommand from the kafka-tools jar.
probe_kafka() {
    port_open "$KAFKA_PORT" || return 1
    KAFKA_TOOL_TIMEOUT=30 kafka_tool org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" \
        --command-config "$KAFKA_HOME/tools-client.properties" --list >/dev/null 2>&1
}

probe_stripe_mock() {
    curl -sf -m 3 -o /dev/null -H 'Authorization: Bearer sk_test_123' "$STRIPE_API_BASE/v1/customers"
}
