#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft) for driftwatch tests and demos.
#
#   bash deploy/kafka/kafka.sh start|stop|status|fetch
#
# The broker jars come from Maven Central through deploy/kafka/pom.xml and are cached in
# deploy/kafka/.cache/libs-<line> (fetched once; refetched only when pom.xml changes).
#
# Environment:
#   KAFKA_LINE             3 (Kafka 3.9.2) or 4 (Kafka 4.0.2)       (default 3)
#   KAFKA_PORT             client port on 127.0.0.1                 (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1       (default 9093)
#   KAFKA_DATA_DIR         data, generated config, pid, kafka.log   (default <repo>/.run/kafka)
#   KAFKA_HEAP             maximum Java heap, e.g. 512m or 1g       (default 512m)
#   KAFKA_JVM_OPTS         extra JVM options                        (default none)
#   KAFKA_CLUSTER_ID       cluster id for formatting a new data dir (default random)
#   KAFKA_EXTRA_CONFIG     file of properties appended to the generated server.properties;
#                          a key given there overrides the template's (e.g. more listeners)
#   KAFKA_FORMAT_ARGS      extra arguments for formatting a new data dir, split at spaces,
#                          e.g. --add-scram SCRAM-SHA-512=[name=alice,password=...]
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to be up  (default 60)
#   KAFKA_STOP_TIMEOUT     seconds after SIGTERM before SIGKILL     (default 20)
#   JAVA_HOME, MVN         Java installation, Maven command         (default java, mvn on PATH)
#
# start prints the bootstrap address (127.0.0.1:PORT) on stdout; progress goes to stderr.
# status exits 0 when the broker runs (and prints the version it logged), 3 when it does not.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

POM="$SCRIPT_DIR/pom.xml"
TEMPLATE="$SCRIPT_DIR/server.properties"
CACHE_DIR="$SCRIPT_DIR/.cache"
KAFKA_LINE="${KAFKA_LINE:-3}"
case "$KAFKA_LINE" in
    3 | 4) ;;
    *)
        printf 'kafka: KAFKA_LINE must be 3 or 4, got %s\n' "$KAFKA_LINE" >&2
        exit 2
        ;;
esac
LIBS_DIR="$CACHE_DIR/libs-$KAFKA_LINE"
LIBS_STAMP="$CACHE_DIR/libs-$KAFKA_LINE.stamp"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$REPO_ROOT/.run/kafka}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
KAFKA_EXTRA_CONFIG="${KAFKA_EXTRA_CONFIG:-}"
KAFKA_FORMAT_ARGS="${KAFKA_FORMAT_ARGS:-}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-20}"
MVN="${MVN:-mvn}"
if [[ -n "${JAVA_HOME:-}" ]]; then
    JAVA="$JAVA_HOME/bin/java"
else
    JAVA="java"
fi

# Absolute data dir, whatever the caller's working directory.
case "$KAFKA_DATA_DIR" in
    /*) ;;
    *) KAFKA_DATA_DIR="$PWD/$KAFKA_DATA_DIR" ;;
esac
PID_FILE="$KAFKA_DATA_DIR/kafka.pid"
LOG_FILE="$KAFKA_DATA_DIR/kafka.log"
PROPS_FILE="$KAFKA_DATA_DIR/server.properties"
LOG4J_FILE="$KAFKA_DATA_DIR/log4j.properties"
TOOLS_LOG4J_FILE="$KAFKA_DATA_DIR/tools-log4j.properties"
LOG_DIRS="$KAFKA_DATA_DIR/data"

READY_PATTERN='Kafka Server started'

log() { printf 'kafka: %s\n' "$*" >&2; }
# shellcheck source=deploy/lib/process.sh
. "$SCRIPT_DIR/../lib/process.sh"

# PID from the pid file if that process is alive and is a Kafka broker, else nothing.
running_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(<"$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against PID reuse: the process must be our java running kafka.Kafka.
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka' || return 1
    fi
    printf '%s\n' "$pid"
}

# The client port the running broker was configured with (from the generated config).
configured_port() {
    sed -n 's|^advertised\.listeners=PLAINTEXT://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$PROPS_FILE" \
        2>/dev/null | head -n 1 || true
}

# Populate deploy/kafka/.cache/libs-<line> from Maven Central once; refetch when pom.xml changes.
fetch_libs() {
    local want have=""
    want="$(cksum <"$POM")"
    [[ -f "$LIBS_STAMP" ]] && have="$(<"$LIBS_STAMP")"
    if [[ "$want" == "$have" ]] && compgen -G "$LIBS_DIR/kafka_2.13-*.jar" >/dev/null; then
        return 0
    fi
    command -v "$MVN" >/dev/null || die "'$MVN' not found; bash deploy/deps.sh kafka installs it"
    mkdir -p "$CACHE_DIR"
    log "fetching the Kafka jars from Maven Central into $LIBS_DIR (once) ..."
    local started=$SECONDS
    # Stale jars of another version must not stay on the classpath.
    rm -rf "$LIBS_DIR" "$LIBS_STAMP"
    "$MVN" -B -q -Dstyle.color=never -f "$POM" "-Pkafka-$KAFKA_LINE" \
        "-Dkafka.libs.dir=$LIBS_DIR" process-resources >&2 ||
        die "mvn failed to fetch the Kafka jars"
    compgen -G "$LIBS_DIR/kafka_2.13-*.jar" >/dev/null ||
        die "mvn ran but $LIBS_DIR has no kafka jar"
    printf '%s\n' "$want" >"$LIBS_STAMP"
    log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars in $((SECONDS - started)) s"
}

# Serialise fetches (two starts at once must not both rewrite the cache).
fetch_libs_locked() {
    mkdir -p "$CACHE_DIR"
    if command -v flock >/dev/null; then
        (
            flock 9
            fetch_libs
        ) 9>"$CACHE_DIR/.lock"
    else
        fetch_libs
    fi
}

kafka_version() {
    local jar
    jar="$(compgen -G "$LIBS_DIR/kafka_2.13-*.jar" | head -n 1)"
    jar="${jar##*/kafka_2.13-}"
    printf '%s\n' "${jar%.jar}"
}

write_configs() {
    local line
    : >"$PROPS_FILE.tmp"
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line//@KAFKA_PORT@/$KAFKA_PORT}"
        line="${line//@KAFKA_CONTROLLER_PORT@/$KAFKA_CONTROLLER_PORT}"
        line="${line//@KAFKA_LOG_DIRS@/$LOG_DIRS}"
        printf '%s\n' "$line" >>"$PROPS_FILE.tmp"
    done <"$TEMPLATE"
    if [[ -n "$KAFKA_EXTRA_CONFIG" ]]; then
        # Java reads the last value of a repeated key: these lines override the template's.
        [[ -r "$KAFKA_EXTRA_CONFIG" ]] || die "KAFKA_EXTRA_CONFIG: cannot read $KAFKA_EXTRA_CONFIG"
        printf '\n# From KAFKA_EXTRA_CONFIG (%s)\n' "$KAFKA_EXTRA_CONFIG" >>"$PROPS_FILE.tmp"
        cat "$KAFKA_EXTRA_CONFIG" >>"$PROPS_FILE.tmp"
    fi
    mv "$PROPS_FILE.tmp" "$PROPS_FILE"

    if [[ "$KAFKA_LINE" == 4 ]]; then
        write_log4j2_configs
        return
    fi
    cat >"$LOG4J_FILE" <<'EOF'
# Generated by deploy/kafka/kafka.sh: broker logs go to stdout, which kafka.sh sends to kafka.log.
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
log4j.logger.org.apache.kafka.clients.NetworkClient=WARN
EOF
    cat >"$TOOLS_LOG4J_FILE" <<'EOF'
# Generated by deploy/kafka/kafka.sh: logging for the storage tool.
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

# Kafka 4 logs through log4j2 (properties syntax, no YAML parser needed on the classpath).
write_log4j2_configs() {
    cat >"$LOG4J_FILE" <<'EOF'
# Generated by deploy/kafka/kafka.sh: broker logs go to stdout, which kafka.sh sends to kafka.log.
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.network.name = org.apache.kafka.clients.NetworkClient
logger.network.level = WARN
EOF
    cat >"$TOOLS_LOG4J_FILE" <<'EOF'
# Generated by deploy/kafka/kafka.sh: logging for the storage tool.
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
EOF
}

# The JVM option that points the logging backend of this Kafka line at a config file.
log_config_opt() {
    if [[ "$KAFKA_LINE" == 4 ]]; then
        printf -- '-Dlog4j2.configurationFile=file:%s\n' "$1"
    else
        printf -- '-Dlog4j.configuration=file:%s\n' "$1"
    fi
}

storage_tool() {
    "$JAVA" -Xmx256m "$(log_config_opt "$TOOLS_LOG4J_FILE")" -cp "$LIBS_DIR/*" \
        kafka.tools.StorageTool "$@"
}

format_storage() {
    if [[ -f "$LOG_DIRS/meta.properties" ]]; then
        return 0
    fi
    local cluster_id="${KAFKA_CLUSTER_ID:-}"
    if [[ -z "$cluster_id" ]]; then
        cluster_id="$(storage_tool random-uuid)" || die "kafka.tools.StorageTool random-uuid failed"
    fi
    local -a extra=()
    if [[ -n "$KAFKA_FORMAT_ARGS" ]]; then
        read -r -a extra <<<"$KAFKA_FORMAT_ARGS"
    fi
    log "formatting $LOG_DIRS (cluster id $cluster_id)"
    storage_tool format --config "$PROPS_FILE" --cluster-id "$cluster_id" --ignore-formatted \
        "${extra[@]}" >>"$LOG_FILE" 2>&1 || die "formatting storage failed; see $LOG_FILE"
}

cmd_start() {
    local pid
    if pid="$(running_pid)"; then
        log "already running (pid $pid) on 127.0.0.1:$(configured_port), data dir $KAFKA_DATA_DIR"
        return 0
    fi
    rm -f "$PID_FILE"
    is_port "$KAFKA_PORT" || die "KAFKA_PORT must be a port number, got '$KAFKA_PORT'"
    is_port "$KAFKA_CONTROLLER_PORT" ||
        die "KAFKA_CONTROLLER_PORT must be a port number, got '$KAFKA_CONTROLLER_PORT'"
    [[ "$KAFKA_PORT" != "$KAFKA_CONTROLLER_PORT" ]] ||
        die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_open "$port"; then
            die "127.0.0.1:$port is already in use (set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
        fi
    done
    command -v "$JAVA" >/dev/null ||
        die "'$JAVA' not found; bash deploy/deps.sh kafka installs Java 17"

    fetch_libs_locked
    mkdir -p "$LOG_DIRS"
    # One log per run; the previous run's log is kept beside it.
    if [[ -f "$LOG_FILE" ]]; then
        mv -f "$LOG_FILE" "$LOG_FILE.prev"
    fi
    write_configs
    format_storage

    local started=$SECONDS
    local -a jvm_opts=(
        "-Xmx$KAFKA_HEAP" "-Xms64m"
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
        -Djava.awt.headless=true
        "$(log_config_opt "$LOG4J_FILE")"
        "-Dkafka.logs.dir=$KAFKA_DATA_DIR"
    )
    if [[ -n "$KAFKA_JVM_OPTS" ]]; then
        local -a extra
        read -r -a extra <<<"$KAFKA_JVM_OPTS"
        jvm_opts+=("${extra[@]}")
    fi
    # setsid: the broker gets its own session, so a Ctrl-C aimed at the caller does not reach
    # it; its stdin/stdout/stderr are detached from the caller (pipes of a test runner would
    # otherwise stay open). The background job's PID is the java process (setsid execs).
    local -a launcher=()
    if command -v setsid >/dev/null; then
        launcher=(setsid)
    fi
    "${launcher[@]}" "$JAVA" "${jvm_opts[@]}" -cp "$LIBS_DIR/*" kafka.Kafka "$PROPS_FILE" \
        </dev/null >>"$LOG_FILE" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"

    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    until grep -q "$READY_PATTERN" "$LOG_FILE" 2>/dev/null && port_open "$KAFKA_PORT"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            log "the broker exited during start-up; last lines of $LOG_FILE:"
            tail -n 30 "$LOG_FILE" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "the broker did not come up within ${KAFKA_START_TIMEOUT} s; end of $LOG_FILE:"
            tail -n 30 "$LOG_FILE" >&2 || true
            cmd_stop
            exit 1
        fi
        sleep 0.2
    done
    log "Kafka $(kafka_version) started in $((SECONDS - started)) s (pid $pid)"
    log "listening on 127.0.0.1:$KAFKA_PORT (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT)"
    log "data dir $KAFKA_DATA_DIR, log $LOG_FILE"
    # The one line on stdout: the bootstrap address, for scripts.
    printf '127.0.0.1:%s\n' "$KAFKA_PORT"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        log "not running (data dir $KAFKA_DATA_DIR)"
        return 0
    fi
    stop_pid "$pid" "$KAFKA_STOP_TIMEOUT"
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        local version
        version="$(sed -n 's/.*Kafka version: \([^ ]*\).*/\1/p' "$LOG_FILE" 2>/dev/null | head -n 1)"
        printf 'kafka: running Kafka %s (pid %s) on 127.0.0.1:%s, data dir %s\n' \
            "${version:-?}" "$pid" "$(configured_port)" "$KAFKA_DATA_DIR"
        return 0
    fi
    printf 'kafka: not running (data dir %s)\n' "$KAFKA_DATA_DIR"
    return 3
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    fetch)
        fetch_libs_locked
        log "Kafka $(kafka_version) jars in $LIBS_DIR"
        ;;
    *)
        printf 'usage: %s start|stop|status|fetch\n' "${0##*/}" >&2
        exit 2
        ;;
esac
