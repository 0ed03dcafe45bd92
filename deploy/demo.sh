#!/usr/bin/env bash
# `make demo`: the live path end to end, on this machine only (127.0.0.1).
#
#   1. starts a local Kafka 3.9 broker (jars from Maven Central, cached) and Alertmanager 0.25;
#   2. starts the driftwatch worker (`driftwatch run`) on the prediction topic;
#   3. publishes a simulated incident through the serving-side EventLogger
#      (`driftwatch simulate --to kafka://...`, one event per message so that Kafka offsets
#      are line numbers and the evaluation can count delays in events);
#   4. shows alert state changes as the worker decides them, then the alerts Alertmanager holds
#      (`amtool alert query`) and how well they matched the injected incident;
#   5. stops everything it started, by PID, on exit (also on Ctrl-C or error).
#
# Environment: SCENARIO (abrupt-shift), EVENTS (40000), DEMO_KAFKA_PORT and DEMO_AM_PORT
# (free ports by default), DEMO_TIMEOUT seconds to wait for the incident to fire (240).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
OUT=$PWD/.run/demo
SCENARIO=${SCENARIO:-abrupt-shift}
EVENTS=${EVENTS:-40000}
free_port() { "$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
KPORT=${DEMO_KAFKA_PORT:-$(free_port)}
KCPORT=$(free_port)
AMPORT=${DEMO_AM_PORT:-$(free_port)}
TIMEOUT=${DEMO_TIMEOUT:-240}
RUN_ID=$(date +%s)
mkdir -p "$OUT"
rm -f "$OUT/alerts.jsonl" "$OUT/stats.json"

export KAFKA_PORT=$KPORT KAFKA_CONTROLLER_PORT=$KCPORT KAFKA_DATA_DIR=$OUT/kafka
export AM_PORT=$AMPORT AM_DATA_DIR=$OUT/alertmanager AM_CONFIG=$OUT/alertmanager.yml
WORKER_PID=
cleanup() {
  set +e
  echo
  echo "== Stopping what the demo started"
  if [ -n "$WORKER_PID" ] && kill -0 "$WORKER_PID" 2>/dev/null; then
    kill "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null
    echo "worker $WORKER_PID stopped"
  fi
  [ -n "${AM_URL:-}" ] && bash deploy/alertmanager/am.sh stop >/dev/null 2>&1 \
    && echo "alertmanager stopped"
  [ -n "${BOOTSTRAP:-}" ] && bash deploy/kafka/kafka.sh stop >/dev/null 2>&1 && echo "kafka stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== 1. Kafka and Alertmanager on 127.0.0.1"
BOOTSTRAP=$(bash deploy/kafka/kafka.sh start)
# The shipped config routes to placeholder webhooks; the demo only needs Alertmanager's API.
sed -e "s#http://127.0.0.1:[0-9]*/#http://127.0.0.1:9/#g" deploy/alertmanager/alertmanager.yml \
  > "$OUT/alertmanager.yml"
AM_URL=$(bash deploy/alertmanager/am.sh start)
echo "kafka $BOOTSTRAP, alertmanager $AM_URL"

cat > "$OUT/monitor.yaml" <<YAML
kafka:
  bootstrap_servers: "$BOOTSTRAP"
  group_id: demo-$RUN_ID
topics:
  predictions: demo-predictions-$RUN_ID
  features: demo-features-$RUN_ID
  labels: demo-labels-$RUN_ID
  dead_letter: demo-dlq-$RUN_ID
notifications:
  receivers:
    - name: alertmanager
      alertmanager:
        urls: ["$AM_URL"]
YAML

echo
echo "== 2. The driftwatch worker (log in $OUT/worker.log)"
"$BIN/driftwatch" run --config "$OUT/monitor.yaml" --alerts "$OUT/alerts.jsonl" \
  --stats "$OUT/stats.json" > "$OUT/worker.log" 2>&1 &
WORKER_PID=$!
echo "worker pid $WORKER_PID; waiting until it consumes"
for _ in $(seq 1 120); do
  [ -s "$OUT/stats.json" ] && break
  kill -0 "$WORKER_PID" 2>/dev/null || { tail -20 "$OUT/worker.log"; exit 1; }
  sleep 0.5
done

echo
echo "== 3. Publishing $EVENTS prediction events of '$SCENARIO' through the EventLogger"
"$BIN/driftwatch" simulate --scenario "$SCENARIO" --events "$EVENTS" --seed 7 \
  --truth "$OUT/truth.json" --to "kafka://$BOOTSTRAP/demo-predictions-$RUN_ID" --batch 1

echo
echo "== 4. Alert state changes as the worker decides them"
"$BIN/python" - "$OUT" "$EVENTS" "$TIMEOUT" "$WORKER_PID" <<'PY'
import json, os, sys, time
out, events, timeout, pid = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
alerts, stats = os.path.join(out, "alerts.jsonl"), os.path.join(out, "stats.json")
seen, deadline, firing = 0, time.monotonic() + timeout, False
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the worker stopped; see " + os.path.join(out, "worker.log"))
    lines = open(alerts, encoding="utf-8").read().splitlines() if os.path.exists(alerts) else []
    for line in lines[seen:]:
        a = json.loads(line)
        labels = ",".join(f"{k}={v}" for k, v in a["labels"].items() if k != "alertname")
        print(f"  offset {a['offset']:>4}  {a['state']:<9} {a['alertname']}{{{labels}}}")
        if a["state"] == "firing":
            print(f"{'':16}{a['annotations']['description']}")
            firing = True
    seen = len(lines)
    try:
        done = json.load(open(stats, encoding="utf-8")).get("accepted", 0) >= events
    except (OSError, ValueError):
        done = False
    if firing and done:
        break
    time.sleep(1)
else:
    sys.exit(f"no firing alert within {timeout:g} s; see {out}/worker.log")
PY

echo
echo "== 5. What Alertmanager holds (amtool alert query)"
sleep 2
amtool alert query --alertmanager.url="$AM_URL"

echo
echo "== 6. Evaluation against the injected incident"
"$BIN/driftwatch" evaluate --alerts "$OUT/alerts.jsonl" --truth "$OUT/truth.json"
