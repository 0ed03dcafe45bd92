# shellcheck shell=bash
# Shared by deploy/kafka/kafka.sh and deploy/alertmanager/am.sh (sourced; needs a `log` function).

# stop_pid PID TIMEOUT: SIGTERM, wait up to TIMEOUT seconds, then SIGKILL, and wait (bounded)
# until the process is gone.
stop_pid() {
    local pid=$1 timeout=$2 i
    log "stopping pid $pid ..."
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "still alive after ${timeout} s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
}
