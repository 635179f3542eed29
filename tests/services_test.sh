#!/usr/bin/env bash
# End-to-end tests of the runtime services as separate processes on loopback: a
# coordinator (colossald --coordinator) and two node daemons (colossald --join), jobs
# submitted and inspected through the `colossal` CLI.
#   - a job completes; its metrics and logs are readable through the CLI
#   - kill -9 of a worker mid-run restarts the job from its latest checkpoint; it
#     succeeds with the per-step losses of an uninterrupted run
#   - the coordinator killed and restarted mid-job keeps every job and its state, and
#     the running job re-attaches and succeeds
#   - cancel stops every worker process of a two-rank (data-parallel) job
#   - 500 concurrent validate_only submits and 20 small real jobs are all accounted for
#   - token auth rejects a missing or wrong token (CLI and daemon)
#   - TLS: a job runs end to end over TLS (CLI, daemon and worker verify the coordinator's
#     certificate); a client without the CA fails; listening beyond loopback without
#     TLS is refused before anything binds
# Prints the figures (submit latency, jobs/s, submit→first step, restart time).
# Every process started here is killed by pid on exit; every wait is bounded.
set -uo pipefail

ROOT="$(pwd)"
COLOSSAL="$ROOT/colossal"
COLOSSALD="$ROOT/colossald"
LOAD="$ROOT/tests/services_load"
CORPUS="$ROOT/tests/golden/adamw/corpus.txt"
T="${TEST_TMPDIR:-$(mktemp -d)}/services"
rm -rf "$T" && mkdir -p "$T" && cd "$T"
failures=0
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  # Workers die with their daemon (PR_SET_PDEATHSIG); reap what is left.
  pkill -9 -f "$T/" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
now_ms() { date +%s%3N; }

# wait_for SECONDS COMMAND...: polls every 0.1 s until the command succeeds.
wait_for() {
  local limit=$1; shift
  local end=$(( $(date +%s) + limit ))
  while ! "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.1
  done
}

json() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
status_json() { "$COLOSSAL" --coordinator "$ADDR" status "$1" --json 2>/dev/null; }
state_of() { status_json "$1" | json 'd["state"]'; }
field_of() { status_json "$1" | json "d[\"$2\"]"; }
is_state() { [ "$(state_of "$1")" = "$2" ]; }
step_at_least() { [ "$(field_of "$1" step)" -ge "$2" ]; }

start_coordinator() {  # DIR LISTEN [extra flags]
  local dir=$1 listen=$2; shift 2
  local log="$dir.$(date +%s%N).log"  # one log per start: a restart must not read the old one
  "$COLOSSALD" --coordinator --listen "$listen" --state-dir "$dir" "$@" >"$log" 2>&1 &
  PIDS+=($!)
  COORD_PID=$!
  wait_for 20 grep -q "coordinator listening on" "$log" || { fail "coordinator did not start: $(tail -3 "$log")"; exit 1; }
  ADDR=$(grep -o "coordinator listening on [0-9.:]*" "$log" | tail -1 | awk '{print $4}')
}

start_daemon() {  # NAME [extra flags]
  local name=$1; shift
  "$COLOSSALD" --join "$ADDR" --slots 2 --node-id "$name" --state-dir "$T/$name" "$@" >"$T/$name.log" 2>&1 &
  PIDS+=($!)
}

losses() {  # metrics.jsonl -> "step loss" per step (the last line for a step wins)
  grep '"loss"' "$1" | sed -E 's/.*"step": ([0-9]+), "loss": ([^,]+),.*/\1 \2/' |
    awk '{l[$1]=$2} END {for (s in l) print s, l[s]}' | sort -n
}

cp "$CORPUS" corpus.txt
cat > quick.yaml <<YAML
name: quick
model: {type: gpt, n_layer: 2, n_head: 2, d_model: 32, seq_len: 16, vocab: 256}
data: {train: corpus.txt, val_fraction: 0.1}
train: {steps: 20, global_batch: 4, micro_batch: 2, val_every: 10, checkpoint: {every: 10}}
resources: {threads_per_rank: 1}
YAML
slow() {  # NAME [extra YAML lines]
  cat > "$1.yaml" <<YAML
name: $1
run_dir: $T/runs/$1
model: {type: gpt, n_layer: 4, n_head: 4, d_model: 128, seq_len: 128, vocab: 256}
data: {train: corpus.txt, val_fraction: 0.0}
train: {steps: 100, global_batch: 8, micro_batch: 4, max_restarts: 2, checkpoint: {every: 20, keep: 0}}
resources: {threads_per_rank: 1}
${2:-}
YAML
}

# --- cluster: coordinator + two daemons ------------------------------------------
start_coordinator "$T/coord" 127.0.0.1:0
PORT=${ADDR##*:}
start_daemon n1
start_daemon n2
wait_for 20 bash -c "\"$COLOSSAL\" --coordinator $ADDR nodes --json | grep -q '\"n2\"' && \"$COLOSSAL\" --coordinator $ADDR nodes --json | grep -q '\"n1\"'" ||
  fail "daemons did not register"
nodes=$("$COLOSSAL" --coordinator "$ADDR" nodes --json | json 'len([n for n in d["nodes"] if n["alive"]])')
[ "$nodes" = 2 ] || fail "expected 2 live nodes, got $nodes"

# --- a job completes; metrics and logs through the CLI ------------------------------
t0=$(now_ms)
ID=$("$COLOSSAL" --coordinator "$ADDR" submit quick.yaml | tail -1)
submit_ms=$(( $(now_ms) - t0 ))
[[ "$ID" =~ ^j-[0-9]+$ ]] || fail "submit did not print a job id: $ID"
wait_for 60 is_state "$ID" SUCCEEDED || fail "quick job did not succeed: $(status_json "$ID")"
for key in id state attempt step; do
  status_json "$ID" | json "d['$key']" >/dev/null || fail "status --json lacks $key"
done
[ "$(field_of "$ID" step)" = 20 ] || fail "quick job step is not 20"
[ "$(losses runs/quick/metrics.jsonl | wc -l)" = 20 ] || fail "metrics.jsonl has no 20 steps"
"$COLOSSAL" --coordinator "$ADDR" logs "$ID" > logs.txt || fail "logs"
grep -q "done: 20 steps" logs.txt || fail "logs lack the worker's last line"
"$COLOSSAL" --coordinator "$ADDR" logs "$ID" --rank 0 | grep -q "val_loss" || fail "logs --rank 0"
"$COLOSSAL" --coordinator "$ADDR" status | grep -q "$ID" || fail "status list lacks the job"

# --- uninterrupted reference run, then kill -9 of a worker mid-run ------------------
slow straight
SID=$("$COLOSSAL" --coordinator "$ADDR" submit straight.yaml | tail -1)
slow killed
KID=$("$COLOSSAL" --coordinator "$ADDR" submit killed.yaml | tail -1)
wait_for 120 step_at_least "$KID" 45 || fail "killed job did not reach step 45"
PID=$(status_json "$KID" | json 'd["ranks"][0]["pid"]')
kill -9 "$PID" && t_kill=$(now_ms)
wait_for 60 bash -c "[ \"\$(\"$COLOSSAL\" --coordinator $ADDR status $KID --json | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[\"attempt\"], d[\"state\"])')\" = '2 RUNNING' ]" ||
  fail "no second attempt after the kill: $(status_json "$KID")"
restart_ms=$(( $(now_ms) - t_kill ))
wait_for 180 is_state "$KID" SUCCEEDED || fail "killed job did not succeed: $(status_json "$KID")"
wait_for 180 is_state "$SID" SUCCEEDED || fail "reference job did not succeed"
[ "$(field_of "$KID" restarts)" = 1 ] || fail "restarts != 1"
diff <(losses runs/straight/metrics.jsonl) <(losses runs/killed/metrics.jsonl) >/dev/null ||
  fail "losses after the restart differ from the uninterrupted run"
[ "$(losses runs/killed/metrics.jsonl | wc -l)" = 100 ] || fail "killed run lacks steps"
grep -q "resumed from" "$T"/n*/jobs/"$KID"/attempt-2/rank-0/worker.log || fail "attempt 2 did not resume from a checkpoint"

# --- coordinator killed and restarted mid-job ----------------------------------------
slow coordkill
CID=$("$COLOSSAL" --coordinator "$ADDR" submit coordkill.yaml | tail -1)
jobs_before=$("$COLOSSAL" --coordinator "$ADDR" status --json | json 'len(d["jobs"])')
wait_for 120 step_at_least "$CID" 20 || fail "job did not reach step 20 before the coordinator kill"
kill -9 "$COORD_PID"
sleep 1
start_coordinator "$T/coord" "127.0.0.1:$PORT"
jobs_after=$("$COLOSSAL" --coordinator "$ADDR" status --json | json 'len(d["jobs"])')
[ "$jobs_before" = "$jobs_after" ] || fail "jobs before/after the coordinator restart: $jobs_before/$jobs_after"
[ "$(state_of "$ID")" = SUCCEEDED ] || fail "finished job lost its state"
wait_for 180 is_state "$CID" SUCCEEDED || fail "job did not survive the coordinator restart: $(status_json "$CID")"
[ "$(field_of "$CID" attempt)" = 1 ] || fail "the coordinator restart restarted the job (workers were not re-attached)"
diff <(losses runs/straight/metrics.jsonl) <(losses runs/coordkill/metrics.jsonl) >/dev/null ||
  fail "losses across the coordinator restart differ"

# --- cancel stops every worker of a two-rank job --------------------------------------
slow cancelme "parallel: {data: 2}"
sed -i 's/resources: {threads_per_rank: 1}/resources: {threads_per_rank: 1, ranks_per_node: 2}/' cancelme.yaml
XID=$("$COLOSSAL" --coordinator "$ADDR" submit cancelme.yaml | tail -1)
wait_for 60 step_at_least "$XID" 3 || fail "two-rank job did not start: $(status_json "$XID")"
PIDS_X=$(status_json "$XID" | json '" ".join(str(r["pid"]) for r in d["ranks"])')
[ "$(echo $PIDS_X | wc -w)" = 2 ] || fail "expected 2 worker pids, got '$PIDS_X'"
"$COLOSSAL" --coordinator "$ADDR" cancel "$XID" >/dev/null || fail "cancel"
wait_for 30 is_state "$XID" CANCELLED || fail "job not CANCELLED"
workers_gone() { for p in $PIDS_X; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
wait_for 20 workers_gone ||
  fail "workers still alive after cancel: $PIDS_X"
"$COLOSSAL" --coordinator "$ADDR" cancel "$XID" 2>err.txt; [ $? = 2 ] && grep -q -i "finished\|terminal\|precondition\|already" err.txt ||
  fail "cancelling a finished job: $(cat err.txt)"
"$COLOSSAL" --coordinator "$ADDR" status j-999999 2>err.txt; [ $? = 2 ] || fail "unknown job is not exit 2: $(cat err.txt)"

# --- 500 concurrent validate_only submits and 20 small real jobs ---------------------
"$LOAD" --coordinator "$ADDR" --job "$T/quick.yaml" --validate 500 --jobs 20 --timeout_s 240 > load.json ||
  fail "load: $(cat load.json)"

# --- token auth ------------------------------------------------------------------------
echo "s3cret-token" > token
echo "wrong-token" > wrong
start_coordinator "$T/secure" 127.0.0.1:0 --token-file "$T/token"
"$COLOSSAL" --coordinator "$ADDR" status 2>err.txt; rc=$?
[ $rc = 2 ] && grep -q "bearer token" err.txt || fail "missing token not rejected (rc $rc): $(cat err.txt)"
"$COLOSSAL" --coordinator "$ADDR" --token-file "$T/wrong" status 2>err.txt; rc=$?
[ $rc = 2 ] && grep -q "wrong bearer token" err.txt || fail "wrong token not rejected (rc $rc): $(cat err.txt)"
"$COLOSSAL" --coordinator "$ADDR" --token-file "$T/token" status >/dev/null || fail "right token rejected"
start_daemon intruder --token-file "$T/wrong"
start_daemon member --token-file "$T/token"
wait_for 20 bash -c "\"$COLOSSAL\" --coordinator $ADDR --token-file $T/token nodes --json | grep -q member" ||
  fail "daemon with the right token did not register"
sleep 1
"$COLOSSAL" --coordinator "$ADDR" --token-file "$T/token" nodes --json | grep -q intruder &&
  fail "daemon with a wrong token registered"

# --- TLS ------------------------------------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 \
  -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >/dev/null 2>&1 ||
  fail "openssl could not make a certificate"
start_coordinator "$T/tls" 127.0.0.1:0 --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" --token-file "$T/token"
TLS_CLI=(--coordinator "$ADDR" --tls-ca "$T/cert.pem" --token-file "$T/token")
"$COLOSSAL" "${TLS_CLI[@]}" status >/dev/null || fail "TLS client with the CA rejected"
"$COLOSSAL" --coordinator "$ADDR" --token-file "$T/token" status >/dev/null 2>&1 && fail "plaintext client reached a TLS coordinator"
start_daemon tlsnode --tls-ca "$T/cert.pem" --token-file "$T/token"
wait_for 20 bash -c "\"$COLOSSAL\" ${TLS_CLI[*]} nodes --json | grep -q tlsnode" || fail "daemon did not join over TLS"
TID=$("$COLOSSAL" "${TLS_CLI[@]}" submit quick.yaml --set "run_dir=$T/runs/tls" | tail -1)
wait_for 60 bash -c "\"$COLOSSAL\" ${TLS_CLI[*]} status $TID --json | grep -q SUCCEEDED" ||
  fail "job over TLS did not succeed: $("$COLOSSAL" "${TLS_CLI[@]}" status "$TID" --json)"
"$COLOSSAL" "${TLS_CLI[@]}" status "$TID" --json | grep -q '"step":20' || fail "TLS job progress did not reach the coordinator"
"$COLOSSALD" --coordinator --listen 0.0.0.0:0 --state-dir "$T/open" >open.txt 2>&1; rc=$?
[ $rc = 2 ] && grep -q "TLS\|token" open.txt || fail "an open listener without TLS was not refused (rc $rc): $(cat open.txt)"

echo "figures: submit (CLI, one job) ${submit_ms} ms; restart after kill -9 (kill -> attempt 2 RUNNING) ${restart_ms} ms"
echo "figures: $(cat load.json)"
if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "all service checks passed"
