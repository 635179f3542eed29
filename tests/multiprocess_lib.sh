# Shared by tests/*_multiprocess_test.sh (sourced): failure counting and the per-step
# loss comparison of two runs' metrics.jsonl.
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# losses METRICS: "step loss" lines, the last record of each step (a resumed run
# rewrites the steps after its checkpoint).
losses() {
  grep '"loss"' "$1" | sed -E 's/.*"step": ([0-9]+), "loss": ([^,]+),.*/\1 \2/' |
    awk '{l[$1]=$2} END {for (s in l) print s, l[s]}' | sort -n
}

# same_losses A B: per-step losses agree within 1e-5 relative.
same_losses() {
  paste <(losses "$1") <(losses "$2") | awk '
    NF != 4 || $1 != $3 { bad = 1 }
    { d = $2 - $4; if (d < 0) d = -d; a = $2 < 0 ? -$2 : $2; if (d > 1e-5 * a) bad = 1 }
    END { exit bad }'
}
