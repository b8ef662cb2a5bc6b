#!/usr/bin/env bash
# Starts the local infrastructure in the background (idempotent) and waits until each component
# answers a real protocol request:
#   PostgreSQL (FerretDB's backend) -> FerretDB (MongoDB wire) -> Kafka (KRaft) -> stripe-mock.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bash "$INFRA_DIR/install.sh"

mkdir -p "$DATA_DIR" "$LOG_DIR" "$RUN_DIR" "$KAFKA_DIR"
# One up/down at a time per data dir. fd 8 is closed in everything started below.
exec 8>"$DATA_DIR/.infra.lock"
flock 8

case "$FERRETDB_HANDLER" in postgresql | sqlite) ;; *) die "AILAB_FERRETDB_HANDLER must be postgresql or sqlite" ;; esac
# Checked before a running FerretDB is restarted for it (Go would also read 0500 as octal).
FERRETDB_INSERT_BATCH_SIZE="${AILAB_FERRETDB_INSERT_BATCH_SIZE:-500}"
[[ "$FERRETDB_INSERT_BATCH_SIZE" =~ ^[1-9][0-9]{0,3}$ ]] && ((FERRETDB_INSERT_BATCH_SIZE <= 1000)) ||
    die "AILAB_FERRETDB_INSERT_BATCH_SIZE must be a number from 1 to 1000"

# A port already answering that is not ours would make the waits below time out confusingly.
require_free_port() {
    port_open "$2" && die "$1: port 127.0.0.1:$2 is already in use by another process (set AILAB_*_PORT, see scripts/infra/README.md)"
    return 0
}

# ---- PostgreSQL --------------------------------------------------------------------------------

pg_init() {
    log "postgres: initdb in $PG_DATA (first time only)..."
    mkdir -p "$PG_DATA"
    if is_root; then chown postgres:postgres "$PG_DATA"; fi
    chmod 700 "$PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --no-locale --auth=trust >>"$LOG_DIR/postgres.log" 2>&1 ||
        die "postgres: initdb failed, see $LOG_DIR/postgres.log"
    # Local development only: no passwords, loopback and the private socket only.
    as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<'EOF'
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
host    all       all   ::1/128        trust
EOF
    printf "\ninclude_if_exists = 'ailab.conf'\n" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
}

pg_write_conf() {
    local fast=""
    if [[ "${AILAB_PG_FAST:-0}" == 1 ]]; then
        # Tests only: a crash can lose or corrupt data.
        fast=$'fsync = off\nsynchronous_commit = off\nfull_page_writes = off'
    fi
    local toast=""
    # FerretDB stores every document as one jsonb value; large ones (the usage ledger's payload
    # chunks, ~50 KB each) are TOASTed, and lz4 compresses them at a third of pglz's CPU (measured:
    # 0.8-1.1 -> 0.3 ms of PostgreSQL CPU per chunk). Values written before keep reading back.
    if "$PG_BIN/pg_config" --configure 2>/dev/null | grep -q -- "--with-lz4"; then
        toast="default_toast_compression = lz4"
    fi
    # Rewritten on every start so that port changes take effect.
    as_pg tee "$PG_DATA/ailab.conf" >/dev/null <<EOF
# Written by scripts/infra/up.sh on each start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK_DIR'
max_connections = 200
shared_buffers = 128MB
# Sustained ingestion fills the default 1 GB of WAL in about a minute, and after each checkpoint the
# first change of every page writes the whole page into the WAL (full_page_writes): fewer checkpoints,
# less WAL and CPU per write (measured on ledger inserts: 4 forced checkpoints per 300,000 -> none,
# PostgreSQL CPU per insert -7 %). Crash recovery replays up to this much WAL.
max_wal_size = 4GB
checkpoint_timeout = 15min
timezone = 'UTC'
log_timezone = 'UTC'
logging_collector = off
log_line_prefix = '%m [%p] '
$toast
$fast
EOF
}

start_postgres() {
    local pid
    pg_choose_dirs
    PG_BIN="$(pg_bin_dir)" || die "postgres: server binaries missing (install.sh installs them)"
    if pid="$(pg_pid)"; then
        printf '%s\n' "$pid" >"$(pid_file postgres)"
        log "postgres: already running (pid $pid, port $PG_PORT)"
        return
    fi
    require_free_port postgres "$PG_PORT"
    pg_prune_orphans
    if [[ "$PG_DATA" != "$DATA_DIR/postgres" ]]; then
        log "postgres: the postgres OS user cannot reach $DATA_DIR; using $PG_ALT_BASE instead"
    fi
    mkdir -p "$PG_SOCK_DIR" "$(dirname "$PG_DATA")"
    if [[ "$PG_DATA" != "$DATA_DIR/postgres" ]]; then
        printf '%s\n' "$DATA_DIR" >"$PG_ALT_BASE/owner"  # for pg_prune_orphans, once the checkout is gone
    fi
    if is_root; then chown postgres:postgres "$PG_SOCK_DIR"; fi
    [[ -f "$PG_DATA/PG_VERSION" ]] || pg_init
    pg_write_conf
    log "postgres: starting on 127.0.0.1:$PG_PORT (data $PG_DATA)"
    printf '\n==== postgres start %s ====\n' "$(date -u +%FT%TZ)" >>"$LOG_DIR/postgres.log"
    # pg_ctl detaches the server (own session) and waits until it accepts connections or dies;
    # the server's output goes to the log file opened here.
    log "postgres: waiting (pg_ctl -w, up to ${WAIT_TIMEOUT}s)..."
    local attempt
    for attempt in 1 2 3; do
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -t "$WAIT_TIMEOUT" start >>"$LOG_DIR/postgres.log" 2>&1 8>&- && return 0
        # After a crash, orphaned backends of the old server can hold it off for a moment.
        ((attempt < 3)) && { log "postgres: start failed, retrying in 3s..."; sleep 3; }
    done
    warn "postgres did not come up; last lines of $LOG_DIR/postgres.log:"
    tail -n 30 "$LOG_DIR/postgres.log" >&2 || true
    die "postgres: pg_ctl start failed"
}

ensure_ferretdb_database() {
    local exists
    exists="$("$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'")"
    if [[ "$exists" != 1 ]]; then
        log "postgres: creating database ferretdb (UTF8)"
        "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres -T template0 -E UTF8 ferretdb
    fi
}

# The SQL files below add to the tables FerretDB makes: through an event trigger, and to the tables
# made before when applied. Each has a setting that, at 0, drops its trigger instead (tables made from
# then on stay as FerretDB makes them; those changed before stay changed).
ferretdb_psql() {
    "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d ferretdb -v ON_ERROR_STOP=1 -Atq "$@" \
        2>>"$LOG_DIR/postgres.log"
}

drop_ferretdb_trigger() {
    ferretdb_psql -c "DROP EVENT TRIGGER IF EXISTS $1" >/dev/null ||
        die "postgres: could not drop the event trigger $1 (see $LOG_DIR/postgres.log)"
}

# Prints what the file's last statements print.
apply_ferretdb_sql() {
    ferretdb_psql -f "$INFRA_DIR/$1" || die "postgres: could not apply $1 (see $LOG_DIR/postgres.log)"
}

# What the two files below share (a loop over indexes, each handled in its own subtransaction).
ensure_ferretdb_index_hooks() {
    apply_ferretdb_sql ferretdb_index_hooks.sql >/dev/null || exit 1
}

# FerretDB 1.24 filters with expressions its own btree indexes cannot serve, so a find/update/replace/
# delete by `_id` or by an indexed field reads every row of the table. ferretdb_gin_indexes.sql has
# PostgreSQL add a GIN index beside each of FerretDB's, but on collections it lists as only inserted
# into (measured in scripts/infra/README.md).
# AILAB_FERRETDB_GIN_INDEXES=0 leaves new indexes without it.
ensure_ferretdb_gin_indexes() {
    if [[ "${AILAB_FERRETDB_GIN_INDEXES:-1}" == 0 ]]; then
        drop_ferretdb_trigger ailab_ferretdb_gin_indexes
        log "postgres: no GIN indexes beside FerretDB's from now on (AILAB_FERRETDB_GIN_INDEXES=0)"
        return
    fi
    local counts
    # The first start over data from before indexes every existing table once (minutes when large).
    log "postgres: GIN indexes beside FerretDB's: installing the trigger, indexing tables that lack them..."
    counts="$(apply_ferretdb_sql ferretdb_gin_indexes.sql)" || exit 1
    # The script's last two statements print how many it dropped (skipped collections) and added.
    log "postgres: GIN indexes beside FerretDB's: $(sed -n 2p <<<"$counts") added now," \
        "$(sed -n 1p <<<"$counts") dropped (skipped collections), new ones follow FerretDB's"
}

# FerretDB keeps `_id` unique with a jsonb btree that costs most of PostgreSQL's CPU per small insert;
# ferretdb_text_id_indexes.sql has PostgreSQL replace it by a text one on the collections it lists
# (the usage ledger: one insert per usage event). AILAB_FERRETDB_TEXT_ID_INDEXES=0 leaves new ones as
# FerretDB makes them.
ensure_ferretdb_text_id_indexes() {
    if [[ "${AILAB_FERRETDB_TEXT_ID_INDEXES:-1}" == 0 ]]; then
        drop_ferretdb_trigger ailab_ferretdb_text_id_indexes
        log "postgres: new usage ledgers keep FerretDB's jsonb _id index (AILAB_FERRETDB_TEXT_ID_INDEXES=0)"
        return
    fi
    local replaced
    replaced="$(apply_ferretdb_sql ferretdb_text_id_indexes.sql)" || exit 1
    log "postgres: text _id indexes on the usage ledgers: ${replaced:-0} replaced now, new ones follow"
}

# ---- FerretDB ----------------------------------------------------------------------------------
start_ferretdb() {
    local pid args
    # FerretDB writes an insert command 100 documents per SQL statement and transaction; 500 costs
    # the usage ledger's inserts less CPU and fewer WAL flushes, and scattered duplicates more (see
    # scripts/infra/README.md). AILAB_FERRETDB_INSERT_BATCH_SIZE=100 is FerretDB's own.
    args=(-listen "127.0.0.1:$MONGO_PORT" -handler "$FERRETDB_HANDLER"
        -insert-batch-size "$FERRETDB_INSERT_BATCH_SIZE")
    if [[ "$FERRETDB_HANDLER" == sqlite ]]; then
        mkdir -p "$FERRETDB_SQLITE_DIR"
        args+=(-sqlite-url "file:$FERRETDB_SQLITE_DIR/")
    else
        args+=(-postgresql-url "$FERRETDB_PG_URL")
    fi
    if pid="$(running_pid ferretdb)"; then
        # FerretDB keeps no state of its own: one started with other arguments, or from a binary that
        # install.sh has rebuilt since (its old file deleted), is restarted to run what is set now.
        # (Not for another AILAB_FERRETDB_GOGC: an environment variable; down.sh, then up.sh.)
        if [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == "$FERRETDB_BIN ${args[*]} " &&
            "$(readlink "/proc/$pid/exe")" != *" (deleted)" ]]; then
            log "ferretdb: already running (pid $pid, port $MONGO_PORT)"
            return
        fi
        log "ferretdb: restarting (pid $pid): it runs other arguments or an older build"
        stop_pid "$pid" 10
        rm -f "$(pid_file ferretdb)"
    fi
    require_free_port ferretdb "$MONGO_PORT"
    log "ferretdb: starting on 127.0.0.1:$MONGO_PORT (handler $FERRETDB_HANDLER)"
    # FerretDB allocates several objects per document it converts; Go's default GC target (100)
    # collects so often that it costs ~15% of FerretDB's CPU on insert-heavy work. 400 trades a few
    # hundred MB of heap for it (measured: 18-21 -> 15-17 us of FerretDB CPU per inserted document).
    start_daemon ferretdb env GOGC="${AILAB_FERRETDB_GOGC:-400}" "$FERRETDB_BIN" "${args[@]}"
}

# ---- Kafka -------------------------------------------------------------------------------------
kafka_write_config() {
    cat >"$KAFKA_DIR/server.properties" <<EOF
# Written by scripts/infra/up.sh on each start; edits are overwritten.
# Single-node KRaft broker+controller for development and tests.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data

num.partitions=3
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
EOF
    cat >"$KAFKA_DIR/log4j2.properties" <<'EOF'
# Written by scripts/infra/up.sh. Broker logs to the console (-> .data/logs/kafka.log).
status = warn
name = ailab-kafka
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
# Noisy at INFO: per-partition, per-segment and per-request chatter.
logger.controller.name = kafka.controller
logger.controller.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.log.name = kafka.log
logger.log.level = WARN
logger.storage.name = org.apache.kafka.storage
logger.storage.level = WARN
logger.raft.name = org.apache.kafka.raft
logger.raft.level = WARN
logger.metadata.name = org.apache.kafka.metadata
logger.metadata.level = WARN
logger.image.name = org.apache.kafka.image
logger.image.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.common.name = org.apache.kafka.common
logger.common.level = WARN
logger.coordinator.name = org.apache.kafka.coordinator
logger.coordinator.level = WARN
logger.partition.name = kafka.cluster
logger.partition.level = WARN
EOF
}

kafka_format_once() {
    local cid
    # Port changes later are fine: the single voter's endpoint follows the new config.
    [[ -f "$KAFKA_DIR/data/meta.properties" ]] && return
    log "kafka: formatting KRaft storage (first time only)..."
    cid="$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$LOG_DIR/kafka.log")"
    printf '%s\n' "$cid" >"$KAFKA_DIR/cluster.id"
    kafka_tool kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_DIR/server.properties" --standalone \
        >>"$LOG_DIR/kafka.log" 2>&1 || die "kafka: storage format failed, see $LOG_DIR/kafka.log"
}

start_kafka() {
    local pid
    if pid="$(running_pid kafka)"; then
        log "kafka: already running (pid $pid, port $KAFKA_PORT)"
        return
    fi
    require_free_port kafka "$KAFKA_PORT"
    require_free_port kafka-controller "$KAFKA_CONTROLLER_PORT"
    kafka_write_config
    kafka_format_once
    log "kafka $KAFKA_VERSION: starting on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
    # shellcheck disable=SC2086  # heap options are a word list
    start_daemon kafka java $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties"
}

# ---- stripe-mock -------------------------------------------------------------------------------
start_stripe_mock() {
    local pid
    if pid="$(running_pid stripe-mock)"; then
        log "stripe-mock: already running (pid $pid, port $STRIPE_MOCK_PORT)"
        return
    fi
    require_free_port stripe-mock "$STRIPE_MOCK_PORT"
    require_free_port stripe-mock-https "$STRIPE_MOCK_HTTPS_PORT"
    log "stripe-mock $STRIPE_MOCK_VERSION: starting on 127.0.0.1:$STRIPE_MOCK_PORT (https $STRIPE_MOCK_HTTPS_PORT)"
    start_daemon stripe-mock "$STRIPE_MOCK_BIN" \
        -http-addr "127.0.0.1:$STRIPE_MOCK_PORT" -https-addr "127.0.0.1:$STRIPE_MOCK_HTTPS_PORT"
}

# ---- waiting -----------------------------------------------------------------------------------
# Probe, but give up at once (status 86, see wait_until) when the process has died.
alive_and() {
    local name="$1"; shift
    if [[ "$name" == postgres ]]; then
        pg_pid >/dev/null || return 86
    else
        running_pid "$name" >/dev/null || return 86
    fi
    "$@" || return 1
}

await() {
    local name="$1"; shift
    if ! wait_until "$name" alive_and "$name" "$@"; then
        warn "$name did not come up; last lines of $LOG_DIR/$name.log:"
        tail -n 30 "$LOG_DIR/$name.log" >&2 || true
        die "$name failed to start (scripts/infra/down.sh stops the rest)"
    fi
}

# ---- main --------------------------------------------------------------------------------------
started=$SECONDS
if [[ "$FERRETDB_HANDLER" == postgresql ]]; then
    start_postgres
    await postgres probe_postgres
    printf '%s\n' "$(pg_pid)" >"$(pid_file postgres)"
    ensure_ferretdb_database
    ensure_ferretdb_index_hooks
    ensure_ferretdb_gin_indexes
    ensure_ferretdb_text_id_indexes
fi
start_ferretdb
start_kafka
start_stripe_mock

await ferretdb probe_ferretdb
await stripe-mock probe_stripe_mock
await kafka probe_kafka

cat >"$DATA_DIR/infra.env" <<EOF
KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS
MONGODB_URI=$MONGODB_URI
STRIPE_API_BASE=$STRIPE_API_BASE
EOF
log "all up in $((SECONDS - started))s (logs: $LOG_DIR, env: $DATA_DIR/infra.env)"
cat "$DATA_DIR/infra.env"
