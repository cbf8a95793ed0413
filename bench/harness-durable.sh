#!/usr/bin/env bash
# The shared harness's fan-out scenario (../shared/fanout-harness, README there: producer.mjs, viewers.py) against
# reasonq's Durable Streams endpoint in SSE mode (issue 17): redis-server + one `reasonq api`. Prints one JSON line.
# Usage: PY=$PWD/.venv/bin/python bench/harness-durable.sh N [R=50] [D=15]
# Compare in the same sitting with the reference server: durable-streams/bench.sh in the harness.
set -euo pipefail
H=${H:-$(cd "$(dirname "$0")/../../shared/fanout-harness" && pwd)}
"$H/quiet.py" "${QUIET_PCT:-10}" "${QUIET_WAIT_S:-45}" || true
N=${1:-100} R=${2:-50} D=${3:-15}
PORT=${PORT:-4438} REDIS_PORT=${REDIS_PORT:-6411} WARMUP_S=${WARMUP_S:-$((2 + N / 500))} GRACE_S=${GRACE_S:-30}
ID=bench-$$ BASE=http://127.0.0.1:$PORT
OUT=$(mktemp -d)
redis-server --port "$REDIS_PORT" --save '' --appendonly no >"$OUT/redis.log" 2>&1 & REDIS=$!
sleep 0.3
REASONQ_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 "$PY" -m reasonq api --port "$PORT" >"$OUT/api.log" 2>&1 & SERVER=$!
PRODUCER=
cleanup() { for p in $PRODUCER $SERVER $REDIS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$OUT"; }
trap cleanup EXIT
for _ in $(seq 100); do curl -s -o /dev/null "$BASE/healthz" && break; sleep 0.1; done
START=$(( $(date +%s%3N) + WARMUP_S * 1000 ))
node "$H/durable-streams/producer.mjs" "$BASE/v1/stream/$ID" "$R" "$D" "$START" >"$OUT/producer.json" & PRODUCER=$!
for _ in $(seq 50); do curl -sf -o /dev/null -I "$BASE/v1/stream/$ID" && break; sleep 0.05; done
python3 "$H/viewers.py" --url "$BASE/v1/stream/$ID?offset=-1&live=sse" -n "$N" --expect $((R * D)) \
  --start "$START" --dur "$D" --grace "$GRACE_S" \
  --resumers "${RESUMERS:-0}" --resume-after "${RESUME_AFTER:-100}" --resume-gap-ms "${RESUME_GAP_MS:-500}" \
  --resume-path "/v1/stream/$ID?offset={offset}&live=sse" \
  --watch server=$SERVER --watch redis=$REDIS --watch producer=$PRODUCER --label "reasonq-ds N=$N R=$R D=$D" >"$OUT/viewers.json"
wait $PRODUCER || echo "producer exited $?" >&2
PRODUCER=
python3 "$H/merge.py" "$OUT/viewers.json" "$OUT/producer.json"
