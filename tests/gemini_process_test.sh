#!/usr/bin/env bash
# Gemini in worker processes, through `colossal run` (embedded coordinator, node daemon,
# one worker):
#  1. the worker's peak resident memory (VmHWM, the rss_peak metric) stays within
#     memory.device_budget plus the executor's activation arena plus a stated constant
#     (the process without model state: code, libraries, corpus, staging), while the same
#     job with its state in memory goes past that bound;
#  2. a worker killed by kill -9 mid-run while its chunks are on NVMe restarts from its
#     last checkpoint (max_restarts 1) and ends with the uninterrupted run's per-step
#     losses; its NVMe directory holds no file afterwards (chunk files are unlinked).
# Every process is started by colossal run, which ends them all.
set -uo pipefail

ROOT="$(pwd)"
source "$ROOT/tests/multiprocess_lib.sh"
enter_workdir geminimp
mkdir -p nvme

# What a worker holds besides model state and the arena: code, libraries, the corpus,
# the chunk manager's tables and I/O rings. Measured here (2026-12-06): 47 MiB for the
# in-memory run (rss_peak minus its 304 MiB of state and 13 MiB arena), 61 MiB under Gemini.
CONSTANT_MIB=128

# last_metric METRICS KEY: the key's value in the last record that has it.
last_metric() { grep -o "\"$2\": [0-9.e+]*" "$1" | tail -1 | sed 's/.*: //'; }
# arena_mib OUT: the activation arena the worker logged.
arena_mib() { grep -o 'arena [0-9.]* MiB' "$1" | head -1 | sed 's/arena //; s/ MiB//'; }

# 1. Peak resident memory: a GPT of about 19M parameters (304 MiB of fp32 weights,
#    gradients and AdamW moments) under a 48 MiB budget, all of it paged through NVMe.
cat > job-mem.yaml <<YAML
name: gemini-mem
model: {type: gpt, n_layer: 6, n_head: 8, d_model: 512, seq_len: 32, vocab: 256}
data: {train: corpus.txt, val_fraction: 0.0, shuffle: false}
train:
  steps: 2
  global_batch: 2
  micro_batch: 2
  optimizer: {type: adamw, lr: 1.0e-3}
  checkpoint: {save: false}
sample: {tokens: 0}
resources: {threads_per_rank: 2}
YAML
budget_mib=48
"$COLOSSAL" run job-mem.yaml --set "run_dir=$T/runs/mem-ref" >out-mem-ref.txt 2>&1 ||
  fail "in-memory run: $(tail -2 out-mem-ref.txt)"
"$COLOSSAL" run job-mem.yaml --set "run_dir=$T/runs/mem" --set memory.placement=auto \
  --set "memory.device_budget=${budget_mib}MiB" --set "memory.nvme_dir=$T/nvme" --set memory.chunk_bytes=4MiB \
  >out-mem.txt 2>&1 || fail "Gemini run: $(tail -2 out-mem.txt)"
ref_rss=$(last_metric runs/mem-ref/metrics.jsonl rss_peak)
rss=$(last_metric runs/mem/metrics.jsonl rss_peak)
arena=$(arena_mib out-mem.txt)
if [ -z "$rss" ] || [ -z "$ref_rss" ] || [ -z "$arena" ]; then
  fail "no rss_peak metric or arena line (rss '$rss', reference '$ref_rss', arena '$arena')"
else
  bound=$(awk -v b="$budget_mib" -v a="$arena" -v c="$CONSTANT_MIB" 'BEGIN { printf "%.0f", (b + a + c) * 1048576 }')
  echo "peak resident: Gemini $((rss / 1048576)) MiB, in memory $((ref_rss / 1048576)) MiB; bound $((bound / 1048576)) MiB = budget $budget_mib + arena $arena + $CONSTANT_MIB MiB"
  [ "$rss" -le "$bound" ] || fail "Gemini's peak resident memory $rss B is above budget + arena + constant ($bound B)"
  [ "$ref_rss" -gt "$bound" ] || fail "the in-memory run's $ref_rss B is within the bound too: the check proves nothing"
fi
same_losses runs/mem-ref/metrics.jsonl runs/mem/metrics.jsonl || fail "Gemini's losses differ from the in-memory run's"
[ "$(last_metric runs/mem/metrics.jsonl nvme_read_bytes)" -gt 0 ] || fail "the Gemini run read nothing from NVMe"

# 2. Kill -9 with chunks on NVMe, restart from the checkpoint.
cat > job-kill.yaml <<YAML
name: gemini-kill
model: {type: gpt, n_layer: 4, n_head: 4, d_model: 128, seq_len: 64, vocab: 256}
data: {train: corpus.txt, val_fraction: 0.0, shuffle: false}
train:
  steps: 40
  global_batch: 8
  micro_batch: 4
  optimizer: {type: adamw, lr: 1.0e-3}
  max_restarts: 1
  checkpoint: {every: 10, keep: 0}
memory: {placement: auto, device_budget: 1MiB, chunk_bytes: 64KiB, nvme_dir: $T/nvme}
sample: {tokens: 0}
resources: {threads_per_rank: 1}
YAML
kill_rank 0 Gemini 15 40
[ -z "$(ls -A nvme)" ] || fail "chunk files left in the NVMe directory: $(ls nvme)"

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "all Gemini process checks passed"
