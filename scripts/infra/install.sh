#!/usr/bin/env bash
# Installs what the local infrastructure needs into the per-user cache (idempotent):
#   PostgreSQL server binaries (Debian package), Kafka jars (Maven), FerretDB (Go build),
#   stripe-mock (go install). Each component is skipped when already present and valid.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

mkdir -p "$CACHE_DIR/bin"
# One installer at a time per cache (CI and a developer may share it).
exec 9>"$CACHE_DIR/.install.lock"
flock 9

src_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }

# ---- PostgreSQL --------------------------------------------------------------------------------
install_postgres() {
    if pg_bin_dir >/dev/null; then
        log "postgres: ok ($(pg_bin_dir))"
        return
    fi
    log "postgres: server binaries missing; installing the Debian package (first time only)..."
    apt_install postgresql
    pg_bin_dir >/dev/null || die "postgres: /usr/lib/postgresql/*/bin/postgres still missing after apt-get"
    log "postgres: ok ($(pg_bin_dir))"
}

# ---- Java + Maven ------------------------------------------------------------------------------
ensure_java_maven() {
    local need=()
    command -v java >/dev/null || need+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || need+=(maven)
    ((${#need[@]} == 0)) || apt_install "${need[@]}"
}

# ---- Kafka jars --------------------------------------------------------------------------------
kafka_libs_valid() {
    local want="$1"
    [[ -f "$KAFKA_LIBS/.complete" && "$(cat "$KAFKA_LIBS/.complete")" == "$want" ]] &&
        [[ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" && -f "$KAFKA_LIBS/kafka-tools-$KAFKA_VERSION.jar" ]] &&
        compgen -G "$KAFKA_LIBS/log4j-slf4j*-impl-*.jar" >/dev/null &&
        [[ -f "$KAFKA_HOME/tools-log4j2.properties" && -f "$KAFKA_HOME/tools-client.properties" ]]
}

write_kafka_tool_configs() {
    cat >"$KAFKA_HOME/tools-log4j2.properties" <<'EOF'
# Kafka command-line tools: warnings and errors only, on stderr.
status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
EOF
    cat >"$KAFKA_HOME/tools-client.properties" <<'EOF'
# Admin client settings for probes: fail fast instead of retrying for a minute.
request.timeout.ms=5000
default.api.timeout.ms=10000
socket.connection.setup.timeout.ms=3000
socket.connection.setup.timeout.max.ms=3000
EOF
}

install_kafka() {
    local pom="$DEPLOY_DIR/kafka/pom.xml" want tmp
    [[ -n "$KAFKA_VERSION" ]] || die "kafka: no <kafka.version> in $pom"
    want="$(src_hash "$pom")"
    if kafka_libs_valid "$want"; then
        log "kafka $KAFKA_VERSION: ok (cached)"
        return
    fi
    ensure_java_maven
    log "kafka $KAFKA_VERSION: resolving jars with maven (first time only)..."
    mkdir -p "$KAFKA_HOME"
    tmp="$KAFKA_HOME/libs.tmp.$$"
    rm -rf "$tmp"
    if ! mvn -q -B -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_HOME/mvn.log" 2>&1; then
        tail -n 40 "$KAFKA_HOME/mvn.log" >&2
        rm -rf "$tmp"
        die "kafka: maven could not resolve the jars (full output: $KAFKA_HOME/mvn.log)"
    fi
    rm -rf "$DEPLOY_DIR/kafka/target"
    write_kafka_tool_configs
    printf '%s\n' "$want" >"$tmp/.complete"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    kafka_libs_valid "$want" || die "kafka: jars incomplete in $KAFKA_LIBS"
    log "kafka $KAFKA_VERSION: ok ($(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS)"
}

# ---- Go programs -------------------------------------------------------------------------------
ensure_go() {
    command -v go >/dev/null ||
        die "go is required (1.24 or newer) to build FerretDB and stripe-mock; install it and retry"
}

# FerretDB 1.24's embedded handler writes an insert command 100 documents per SQL statement and
# transaction, a number fixed in ferretdb.New. The build uses a copy of the module (3 MB, in a
# temporary directory; the module cache is untouched) where it is the variable InsertBatchSize,
# declared by patch/insert_batch_size.go added to that package; main.go sets it from
# -insert-batch-size. Writes the copy and this module pointing at it (go.mod replace) under $2.
ferretdb_patched_source() {
    local dir="$1" out="$2" src file
    src="$(cd "$dir" && GOFLAGS="${GOFLAGS:-} -mod=mod" go mod download github.com/FerretDB/FerretDB &&
        GOFLAGS="${GOFLAGS:-} -mod=mod" go list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB)" ||
        die "ferretdb: could not download the FerretDB module"
    cp -R "$src" "$out/FerretDB" || die "ferretdb: could not copy $src"
    chmod -R u+w "$out/FerretDB"
    file="$out/FerretDB/ferretdb/ferretdb.go"
    # Exactly one such line, or this FerretDB differs from the one this was written for.
    [[ "$(grep -cE '^[[:space:]]*BatchSize:[[:space:]]*100,$' "$file")" == 1 ]] ||
        die "ferretdb: $file does not fix BatchSize at 100 on one line; the insert batch patch needs updating"
    sed -i -E 's/^([[:space:]]*BatchSize:[[:space:]]*)100,$/\1InsertBatchSize,/' "$file"
    cp "$dir/patch/insert_batch_size.go" "$out/FerretDB/ferretdb/ailab_insert_batch_size.go"
    mkdir "$out/cmd"
    cp "$dir/main.go" "$dir/go.mod" "$dir/go.sum" "$out/cmd/"
    (cd "$out/cmd" && go mod edit -replace github.com/FerretDB/FerretDB=../FerretDB)
}

install_ferretdb() {
    local dir="$DEPLOY_DIR/ferretdb" want stamp="$FERRETDB_BIN.src-sha256"
    [[ -n "$FERRETDB_VERSION" ]] || die "ferretdb: no FerretDB requirement in $dir/go.mod"
    # The sources, and how they are patched (not the rest of this script: no rebuild for other edits).
    want="$(src_hash "$dir/main.go" "$dir/go.mod" "$dir/go.sum" "$dir/patch/insert_batch_size.go" \
        <(declare -f ferretdb_patched_source))"
    if [[ -x "$FERRETDB_BIN" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
        "$FERRETDB_BIN" -h >/dev/null 2>&1; then
        log "ferretdb $FERRETDB_VERSION: ok (cached)"
        return
    fi
    ensure_go
    log "ferretdb $FERRETDB_VERSION: building with go (first time only, ~1-2 min)..."
    FERRETDB_BUILD_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ailab-ferretdb-build.XXXXXX")"
    # Also on failure or Ctrl-C; the copy's files come read-only from the module cache.
    trap 'chmod -R u+w "$FERRETDB_BUILD_DIR" 2>/dev/null; rm -rf "$FERRETDB_BUILD_DIR" "$FERRETDB_BIN.tmp.$$"' EXIT
    ferretdb_patched_source "$dir" "$FERRETDB_BUILD_DIR"
    (cd "$FERRETDB_BUILD_DIR/cmd" && GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false" \
        go build -trimpath -o "$FERRETDB_BIN.tmp.$$" .) || die "ferretdb: go build failed"
    # `-h` runs the package init code (where a cmd/ferretdb build would panic) and exits 0.
    "$FERRETDB_BIN.tmp.$$" -h >/dev/null 2>&1 || die "ferretdb: built binary does not run"
    mv -f "$FERRETDB_BIN.tmp.$$" "$FERRETDB_BIN"
    printf '%s\n' "$want" >"$stamp"
    log "ferretdb $FERRETDB_VERSION: ok ($FERRETDB_BIN)"
}

install_stripe_mock() {
    local stamp="$STRIPE_MOCK_BIN.version" tmpbin
    if [[ -x "$STRIPE_MOCK_BIN" && -f "$stamp" && "$(cat "$stamp")" == "$STRIPE_MOCK_VERSION" ]] &&
        "$STRIPE_MOCK_BIN" -version >/dev/null 2>&1; then
        log "stripe-mock $STRIPE_MOCK_VERSION: ok (cached)"
        return
    fi
    ensure_go
    log "stripe-mock $STRIPE_MOCK_VERSION: building with go install (first time only)..."
    tmpbin="$CACHE_DIR/bin/.gobin.$$"
    rm -rf "$tmpbin"
    (cd / && GOBIN="$tmpbin" GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false" \
        go install "github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION") ||
        { rm -rf "$tmpbin"; die "stripe-mock: go install failed"; }
    "$tmpbin/stripe-mock" -version >/dev/null 2>&1 || { rm -rf "$tmpbin"; die "stripe-mock: built binary does not run"; }
    mv -f "$tmpbin/stripe-mock" "$STRIPE_MOCK_BIN"
    rm -rf "$tmpbin"
    printf '%s\n' "$STRIPE_MOCK_VERSION" >"$stamp"
    log "stripe-mock $STRIPE_MOCK_VERSION: ok ($STRIPE_MOCK_BIN)"
}

log "cache: $CACHE_DIR"
install_postgres
install_kafka
install_ferretdb
install_stripe_mock
