#!/usr/bin/env bash
# One line per component: running/stopped, pid, port, and whether it answers a real request
# (the same probes as up.sh). Exit 0 when everything is up and answering, 3 otherwise.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

all_ok=1

report() {
    local name="$1" pid="$2" port="$3" probe="$4" state answers
    if [[ -n "$pid" ]]; then
        state=running
        if "$probe"; then answers=yes; else answers=no; all_ok=0; fi
    else
        state=stopped pid=- answers=no all_ok=0
    fi
    printf '%-12s %-8s pid=%-8s port=%-6s answers=%s\n' "$name" "$state" "$pid" "$port" "$answers"
}

pid_of() { running_pid "$1" 2>/dev/null || true; }

if [[ "$FERRETDB_HANDLER" == postgresql ]]; then
    pg_choose_dirs
    report postgres "$(pg_pid 2>/dev/null || true)" "$PG_PORT" probe_postgres
else
    printf '%-12s %s\n' postgres "not used (AILAB_FERRETDB_HANDLER=$FERRETDB_HANDLER)"
fi
report ferretdb "$(pid_of ferretdb)" "$MONGO_PORT" probe_ferretdb
report kafka "$(pid_of kafka)" "$KAFKA_PORT" probe_kafka
report stripe-mock "$(pid_of stripe-mock)" "$STRIPE_MOCK_PORT" probe_stripe_mock

if ((all_ok)); then
    printf 'KAFKA_BOOTSTRAP_SERVERS=%s\nMONGODB_URI=%s\nSTRIPE_API_BASE=%s\n' \
        "$KAFKA_BOOTSTRAP_SERVERS" "$MONGODB_URI" "$STRIPE_API_BASE"
    exit 0
fi
exit 3
