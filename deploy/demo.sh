#!/usr/bin/env bash
# `make demo`: simulate an incident, replay it through the monitor, show the alerts and how
# well they matched the injected truth. Everything is written under .run/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=.run/demo
SCENARIO=${SCENARIO:-abrupt-shift}
EVENTS=${EVENTS:-60000}
mkdir -p "$OUT"

echo "== 1. Simulating $EVENTS prediction events of scenario '$SCENARIO' (100 events/s of event time)"
"$BIN/driftwatch" simulate --scenario "$SCENARIO" --events "$EVENTS" --seed 7 \
  --out "$OUT/events.jsonl" --truth "$OUT/truth.json"

echo
echo "== 2. Replaying them through driftwatch (reference learned from the first 5,000 events)"
"$BIN/driftwatch" replay "$OUT/events.jsonl" --alerts "$OUT/alerts.jsonl"

echo
echo "== 3. Alert state changes ($OUT/alerts.jsonl)"
"$BIN/python" - "$OUT/alerts.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    a = json.loads(line)
    labels = ",".join(f"{k}={v}" for k, v in a["labels"].items() if k not in ("alertname",))
    ann = a["annotations"]
    print(f"  line {a['offset']:>7}  {a['state']:<9} {a['alertname']}{{{labels}}}")
    if a["state"] == "firing":
        print(f"{'':20}{ann['description']}")
PY

echo
echo "== 4. Evaluation against the injected incident"
"$BIN/driftwatch" evaluate --alerts "$OUT/alerts.jsonl" --truth "$OUT/truth.json"
