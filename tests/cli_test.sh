#!/usr/bin/env bash
# End-to-end tests of the `colossal` binary: bad input of every kind exits 2 with a
# one-line error naming the file/key/line:column and writes nothing; a run resumed from
# a checkpoint reproduces the uninterrupted run's losses bit for bit; a token file
# trains exactly like its text; a graph-file model trains exactly like the built-in GPT;
# generate samples deterministically from a checkpoint.
set -uo pipefail

BIN="$(pwd)/colossal"
CORPUS="$(pwd)/tests/golden/adamw/corpus.txt"
T="${TEST_TMPDIR:-$(mktemp -d)}/cli"
rm -rf "$T" && mkdir -p "$T" && cd "$T"
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_error CODE PATTERN -- ARGS...: the command exits CODE, prints one stderr line
# matching PATTERN (grep -E), and no crash.
expect_error() {
  local code="$1" pattern="$2"; shift 3
  "$BIN" "$@" >out.txt 2>err.txt
  local rc=$?
  if [ "$rc" != "$code" ]; then fail "'$*' exited $rc, want $code: $(cat err.txt)"; return; fi
  if [ "$(wc -l < err.txt)" != 1 ]; then fail "'$*' printed $(wc -l < err.txt) error lines: $(cat err.txt)"; return; fi
  grep -Eq -- "$pattern" err.txt || fail "'$*' error does not match /$pattern/: $(cat err.txt)"
}

cp "$CORPUS" corpus.txt
cat > job.yaml <<YAML
name: tiny
run_dir: $T/runs/tiny
model: {type: gpt, n_layer: 2, n_head: 2, d_model: 32, seq_len: 16, vocab: 256}
data: {train: corpus.txt, tokenizer: bytes, val_fraction: 0.1, shuffle: false}
train:
  steps: 8
  global_batch: 4
  micro_batch: 2
  optimizer: {type: lamb, lr: 1.0e-2, weight_decay: 0.01, no_decay: [bias, ln_]}
  lr_schedule: {warmup: 2, decay: cosine, min_lr: 1.0e-3}
  grad_clip: 1.0
  checkpoint: {every: 4, keep: 0}
  val_every: 4
  val_batches: 2
sample: {prompt: "In the", tokens: 20, temperature: 0.8, top_k: 10}
YAML

# --- bad input -------------------------------------------------------------------
printf 'name: x\nmodel: {type: gpt\n' > malformed.yaml
expect_error 2 'malformed.yaml:[0-9]+:[0-9]+' -- run malformed.yaml
sed 's/micro_batch: 2/micro_bach: 2/' job.yaml > typo.yaml
expect_error 2 "typo.yaml:8:3: .*micro_bach.*did you mean 'micro_batch'" -- run typo.yaml
sed 's/steps: 8/steps: eight/' job.yaml > type.yaml
expect_error 2 'type.yaml:6:10: train.steps' -- run type.yaml
expect_error 2 'train.global_batch' -- run job.yaml --set train.global_batch=3
expect_error 2 "unknown flag --frobnicate" -- run job.yaml --frobnicate
# Sequence parallelism's divisibility rules name the key, the value and the rule.
expect_error 2 'parallel.sequence.size: ring attention with zigzag chunks .*seq_len \(16\) divisible by 2 x size; got size 16' \
  -- run job.yaml --set parallel.sequence.size=16 --set resources.ranks_per_node=16
expect_error 2 'parallel.sequence.size: all_to_all splits .* size must divide 2, got 4' \
  -- run job.yaml --set parallel.sequence.size=4 --set parallel.sequence.mode=all_to_all --set resources.ranks_per_node=4
expect_error 2 'nothere.yaml' -- run nothere.yaml
sed 's#train: corpus.txt#train: missing.txt#' job.yaml > missing.yaml
expect_error 2 'data.train.*missing.txt' -- run missing.yaml

# A token file cut short, and one with a flipped payload byte.
"$BIN" tokenize corpus.txt corpus.tokens >/dev/null || fail "tokenize"
head -c 200 corpus.tokens > short.tokens
expect_error 2 'short.tokens' -- run job.yaml --set data.train=short.tokens
cp corpus.tokens flipped.tokens
printf '\x01' | dd of=flipped.tokens bs=1 seek=100 conv=notrunc 2>/dev/null
expect_error 2 'flipped.tokens.*(checksum|CRC)' -- run job.yaml --set data.train=flipped.tokens

# init_from: truncated and garbage safetensors; nothing may be written for the run.
"$BIN" run job.yaml --set train.steps=4 --set train.lr_schedule.warmup=1 \
  --set run_dir="$T/runs/seed" --set sample.tokens=0 >/dev/null 2>&1 || fail "seed run"
MODEL="$T/runs/seed/checkpoints/step-4/model.safetensors"
head -c 1000 "$MODEL" > cut.safetensors
expect_error 2 'cut.safetensors' -- run job.yaml --set model.init_from=cut.safetensors --set run_dir="$T/runs/bad1"
[ -e "$T/runs/bad1/checkpoints" ] && [ -n "$(ls -A "$T/runs/bad1/checkpoints")" ] && fail "checkpoint written after bad init_from"
printf 'not a safetensors file at all' > junk.safetensors
expect_error 2 'junk.safetensors' -- run job.yaml --set model.init_from=junk.safetensors --set run_dir="$T/runs/bad2"
# A checkpoint from another model shape: named tensor and shapes in the message.
expect_error 2 'wte.weight.*shape|shape.*wte.weight' -- run job.yaml --set model.init_from="$MODEL" \
  --set model.d_model=64 --set run_dir="$T/runs/bad3"

# --- exact resume ----------------------------------------------------------------
"$BIN" run job.yaml --set run_dir="$T/runs/full" --no-resume >/dev/null 2>&1 || fail "full run"
"$BIN" run job.yaml --set run_dir="$T/runs/resumed" --no-resume >/dev/null 2>&1 || fail "first run"
rm -rf "$T/runs/resumed/checkpoints/step-8"
"$BIN" run job.yaml --set run_dir="$T/runs/resumed" >resume.txt 2>&1 || fail "resumed run"
losses() { grep '"loss"' "$1" | sed -E 's/.*"step": ([0-9]+), "loss": ([^,]+),.*/\1 \2/' | sort -n -k1,1 -s | awk '{l[$1]=$2} END {for (s in l) print s, l[s]}' | sort -n; }
diff <(losses "$T/runs/full/metrics.jsonl") <(losses "$T/runs/resumed/metrics.jsonl") >/dev/null \
  || fail "resumed losses differ: $(diff <(losses "$T/runs/full/metrics.jsonl") <(losses "$T/runs/resumed/metrics.jsonl"))"
[ "$(losses "$T/runs/full/metrics.jsonl" | wc -l)" = 8 ] || fail "expected 8 loss records"
grep -q '"val_loss"' "$T/runs/full/metrics.jsonl" || fail "no val_loss in metrics"
grep -q 'resumed from' resume.txt || fail "second run did not resume"

# --- token file and graph file train exactly like text and the built-in GPT -------
"$BIN" run job.yaml --set run_dir="$T/runs/tokens" --set data.train=corpus.tokens --no-resume >/dev/null 2>&1 || fail "token run"
diff <(losses "$T/runs/full/metrics.jsonl") <(losses "$T/runs/tokens/metrics.jsonl") >/dev/null || fail "token file losses differ"
"$BIN" graph job.yaml --export tiny.graph >/dev/null || fail "graph export"
"$BIN" run job.yaml --set run_dir="$T/runs/graph" --set 'model={graph: tiny.graph}' --no-resume >/dev/null 2>&1 || fail "graph-file run"
diff <(losses "$T/runs/full/metrics.jsonl") <(losses "$T/runs/graph/metrics.jsonl") >/dev/null || fail "graph-file losses differ"
# The blockwise attention kernel trains like the fused one.
"$BIN" run job.yaml --set run_dir="$T/runs/block" --set model.attention=block --no-resume >block.txt 2>&1 ||
  fail "block attention run: $(tail -2 block.txt)"
paste <(losses "$T/runs/full/metrics.jsonl") <(losses "$T/runs/block/metrics.jsonl") |
  awk 'NF != 4 || $1 != $3 { bad = 1 } { d = $2 - $4; if (d < 0) d = -d; if (d > 1e-5 * $2) bad = 1 } END { exit bad }' ||
  fail "block attention losses differ from the fused kernel's"
# The graph file's layer marks let it run as a pipeline, recomputing its layers.
"$BIN" run job.yaml --set run_dir="$T/runs/graph-pp2" --set 'model={graph: tiny.graph}' --set parallel.pipeline=2 \
  --set resources.ranks_per_node=2 --set memory.activation_checkpointing=true --no-resume >graph-pp2.txt 2>&1 ||
  fail "graph-file pipeline run: $(tail -2 graph-pp2.txt)"
paste <(losses "$T/runs/full/metrics.jsonl") <(losses "$T/runs/graph-pp2/metrics.jsonl") |
  awk 'NF != 4 || $1 != $3 { bad = 1 } { d = $2 - $4; if (d < 0) d = -d; if (d > 1e-5 * $2) bad = 1 } END { exit bad }' ||
  fail "graph-file pipeline losses differ from 1 rank"

# --- graph summary, generate -------------------------------------------------------
"$BIN" graph job.yaml > graph.txt || fail "graph"
# 2 layers, C=32, V=256, T=16: 256·32 + 16·32 + 2·(12·32² + 13·32) + 2·32 = 34176.
grep -Eq '^parameters +34176 ' graph.txt || fail "graph parameter count: $(grep parameters graph.txt)"
# Gemini: the chunk layout and what a step moves.
mkdir -p nvme
"$BIN" graph job.yaml --set memory.nvme_dir="$T/nvme" --set memory.chunk_bytes=16KiB \
  --set memory.offload_optim_frac=1 > gemini-graph.txt || fail "graph of a Gemini job"
grep -Eq '^gemini: [0-9]+ chunks of 16.00 KiB \(memory.chunk_bytes\)' gemini-graph.txt ||
  fail "no chunk summary: $(grep gemini gemini-graph.txt | head -2)"
grep -Eq '^gemini: each step moves [0-9.]+ [KM]iB from NVMe' gemini-graph.txt || fail "no traffic prediction"
grep -Eq '^0 +32.0 KiB +100% +params, grads +wte.weight$' gemini-graph.txt ||
  fail "chunk table: $(grep -A2 '^chunk' gemini-graph.txt)"
"$BIN" generate "$T/runs/full/checkpoints" --prompt "In the" --tokens 30 --seed 7 > gen1.txt || fail "generate"
"$BIN" generate "$T/runs/full/checkpoints/step-8" --prompt "In the" --tokens 30 --seed 7 > gen2.txt || fail "generate step dir"
cmp -s gen1.txt gen2.txt || fail "generate is not deterministic"
[ "$(head -c 6 gen1.txt)" = "In the" ] || fail "generate does not echo the prompt"
[ "$(wc -c < gen1.txt)" -ge 36 ] || fail "generate printed too little"
expect_error 2 'no checkpoint' -- generate "$T"

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "all CLI checks passed"
