#!/usr/bin/env bash
# Local Alertmanager 0.25 (Debian package prometheus-alertmanager) for driftwatch tests and demos.
#
#   bash deploy/alertmanager/am.sh start|stop|status
#
# It listens on 127.0.0.1 only, with clustering (HA gossip) disabled.
#
# Environment:
#   AM_PORT            HTTP port on 127.0.0.1                          (default 9093)
#   AM_DATA_DIR        storage (silences, notification log), pid, log  (default <repo>/.run/alertmanager)
#   AM_CONFIG          configuration file                  (default deploy/alertmanager/alertmanager.yml)
#   AM_BIN             the Alertmanager binary               (default /usr/bin/prometheus-alertmanager)
#   AMTOOL             amtool, to check the configuration first            (default amtool on PATH)
#   AM_LOG_LEVEL       debug, info, warn, error                            (default info)
#   AM_START_TIMEOUT   seconds to wait until it answers /-/ready           (default 30)
#   AM_STOP_TIMEOUT    seconds after SIGTERM before SIGKILL                (default 10)
#
# start prints the base URL (http://127.0.0.1:PORT) on stdout; progress goes to stderr.
# status exits 0 when Alertmanager runs, 3 when it does not.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

AM_PORT="${AM_PORT:-9093}"
AM_DATA_DIR="${AM_DATA_DIR:-$REPO_ROOT/.run/alertmanager}"
AM_CONFIG="${AM_CONFIG:-$SCRIPT_DIR/alertmanager.yml}"
AM_BIN="${AM_BIN:-/usr/bin/prometheus-alertmanager}"
AMTOOL="${AMTOOL:-amtool}"
AM_LOG_LEVEL="${AM_LOG_LEVEL:-info}"
AM_START_TIMEOUT="${AM_START_TIMEOUT:-30}"
AM_STOP_TIMEOUT="${AM_STOP_TIMEOUT:-10}"

absolute() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$PWD/$1" ;;
    esac
}
AM_DATA_DIR="$(absolute "$AM_DATA_DIR")"
AM_CONFIG="$(absolute "$AM_CONFIG")"
PID_FILE="$AM_DATA_DIR/alertmanager.pid"
PORT_FILE="$AM_DATA_DIR/alertmanager.port"
LOG_FILE="$AM_DATA_DIR/alertmanager.log"
STORAGE="$AM_DATA_DIR/data"

log() { printf 'alertmanager: %s\n' "$*" >&2; }
# shellcheck source=deploy/lib/process.sh
. "$SCRIPT_DIR/../lib/process.sh"

# True when Alertmanager on 127.0.0.1:$1 answers GET /-/ready with 200.
ready() {
    local status
    status="$( (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
        head -n 1 <&3
    ) 2>/dev/null)" || return 1
    [[ "$status" == *" 200"* ]]
}

# PID from the pid file if that process is alive and is our Alertmanager, else nothing.
running_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(<"$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against PID reuse: the process must be an alertmanager using our storage.
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--storage.path=$STORAGE" || return 1
    fi
    printf '%s\n' "$pid"
}

cmd_start() {
    local pid
    if pid="$(running_pid)"; then
        log "already running (pid $pid) on 127.0.0.1:$(cat "$PORT_FILE" 2>/dev/null || echo '?')"
        printf 'http://127.0.0.1:%s\n' "$(cat "$PORT_FILE" 2>/dev/null || echo "$AM_PORT")"
        return 0
    fi
    rm -f "$PID_FILE"
    is_port "$AM_PORT" || die "AM_PORT must be a port number, got '$AM_PORT'"
    [[ -x "$AM_BIN" ]] ||
        die "$AM_BIN not found; bash deploy/deps.sh demo installs it"
    [[ -r "$AM_CONFIG" ]] || die "cannot read $AM_CONFIG"
    if port_open "$AM_PORT"; then
        die "127.0.0.1:$AM_PORT is already in use (set AM_PORT)"
    fi
    if command -v "$AMTOOL" >/dev/null; then
        "$AMTOOL" check-config "$AM_CONFIG" >&2 || die "amtool check-config failed on $AM_CONFIG"
    fi
    mkdir -p "$STORAGE"
    if [[ -f "$LOG_FILE" ]]; then
        mv -f "$LOG_FILE" "$LOG_FILE.prev"
    fi
    local -a launcher=()
    if command -v setsid >/dev/null; then
        launcher=(setsid)
    fi
    # --cluster.listen-address= (empty) disables the HA gossip listener on 0.0.0.0:9094.
    "${launcher[@]}" "$AM_BIN" \
        "--config.file=$AM_CONFIG" \
        "--storage.path=$STORAGE" \
        "--web.listen-address=127.0.0.1:$AM_PORT" \
        "--web.external-url=http://127.0.0.1:$AM_PORT" \
        "--cluster.listen-address=" \
        "--log.level=$AM_LOG_LEVEL" \
        </dev/null >>"$LOG_FILE" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"
    printf '%s\n' "$AM_PORT" >"$PORT_FILE"

    local started=$SECONDS deadline=$((SECONDS + AM_START_TIMEOUT))
    until ready "$AM_PORT"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            log "Alertmanager exited during start-up; last lines of $LOG_FILE:"
            tail -n 20 "$LOG_FILE" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "not ready within ${AM_START_TIMEOUT} s; end of $LOG_FILE:"
            tail -n 20 "$LOG_FILE" >&2 || true
            cmd_stop
            exit 1
        fi
        sleep 0.1
    done
    log "started in $((SECONDS - started)) s (pid $pid), config $AM_CONFIG, log $LOG_FILE"
    printf 'http://127.0.0.1:%s\n' "$AM_PORT"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        log "not running (data dir $AM_DATA_DIR)"
        return 0
    fi
    # SIGTERM: Alertmanager writes its notification log and silences to disk before exiting.
    stop_pid "$pid" "$AM_STOP_TIMEOUT"
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        printf 'alertmanager: running (pid %s) on http://127.0.0.1:%s, data dir %s\n' \
            "$pid" "$(cat "$PORT_FILE" 2>/dev/null || echo '?')" "$AM_DATA_DIR"
        return 0
    fi
    printf 'alertmanager: not running (data dir %s)\n' "$AM_DATA_DIR"
    return 3
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        printf 'usage: %s start|stop|status\n' "${0##*/}" >&2
        exit 2
        ;;
esac
