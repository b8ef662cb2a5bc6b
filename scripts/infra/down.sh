#!/usr/bin/env bash
# Stops the local infrastructure (idempotent): stripe-mock, Kafka, FerretDB, PostgreSQL.
#   down.sh          stop, keep data
#   down.sh --purge  stop and delete the data dir (Kafka topics, FerretDB/PostgreSQL data, logs)
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

purge=0
case "${1:-}" in
    "") ;;
    --purge) purge=1 ;;
    -h | --help) sed -n '2,4p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (use --purge or nothing)" ;;
esac

if [[ -d "$DATA_DIR" ]]; then
    exec 8>"$DATA_DIR/.infra.lock"
    flock 8
fi

stop_component() {
    local name="$1" grace="$2" pid
    if pid="$(running_pid "$name")"; then
        log "$name: stopping (pid $pid)..."
        stop_pid "$pid" "$grace"
        log "$name: stopped"
    else
        log "$name: not running"
    fi
    rm -f "$(pid_file "$name")"
}

stop_postgres() {
    local bin pid
    pg_choose_dirs
    if pid="$(pg_pid)"; then
        log "postgres: stopping (pid $pid)..."
        bin="$(pg_bin_dir)" || die "postgres: pg_ctl not found"
        if ! as_pg "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 8>&-; then
            warn "postgres: pg_ctl stop failed; sending SIGQUIT"
            kill -QUIT "$pid" 2>/dev/null || true
        fi
        log "postgres: stopped"
    else
        log "postgres: not running"
    fi
    rm -f "$(pid_file postgres)"
}

stop_component stripe-mock 10
stop_component kafka 30
stop_component ferretdb 10
stop_postgres

if ((purge)); then
    case "$DATA_DIR" in
        / | "$HOME" | "$REPO_ROOT" | "$CACHE_DIR") die "refusing to purge $DATA_DIR" ;;
    esac
    log "purging $DATA_DIR"
    rm -rf "$DATA_DIR"
    if [[ -d "$PG_ALT_BASE" ]]; then
        log "purging $PG_ALT_BASE"
        rm -rf "$PG_ALT_BASE"
    fi
fi
