#!/usr/bin/env bash
# Issue 18, fifth round (prepared 2026-11-30; ran 2026-11-30: bench/RESULTS.md "fifth round"): three calls in a row on one warm 2-GPU machine, as in
# issue18_round4.sh (run folders and Inductor cache in the ignored runs/, kept between calls; each call resumes).
#   GPU 0, every call: `reproduce busi-mobileutr --seeds 41,42` with `--augment released` (the released RandomRotate90 +
#     Flip draw, nb 45): the last untested candidate for the missing point, 6 full-length runs, 3 at once under MPS
#     (~730 s per three, so ~1500 s over the three calls). Compare with h200x2_full_busi_mobileutr_2seeds.md (same seeds).
#   GPU 1, call 1: the compiled SRSNet step after the amax -> max fix: bench/check_srsnet_compile.py (finite with max,
#     NaN with amax?), then the speed of the fixed step (srsnet_bench.sh rows bf16cl:RS ro+chk:RS ro:RS).
#   GPU 1, calls 2-3: `reproduce sirst-srsnet` compiled (reduce-overhead), 3 at once: R runs and the start of the S runs,
#     i.e. whether a compiled two-phase run trains (curves) and how fast, before a session is spent on the whole table.
#     The rows will be partial; a full table needs a session of its own (~5000 GPU-s alone, ~3000 under MPS).
# Usage: CALL=1 bash scripts/device/issue18_round5.sh, then CALL=2 and CALL=3 at once after each call returns (the machine
# is given back 30 s after a call). Carry .devcache/busi256.npz and .devcache/sirst256.npz (43 MB with the tree).
set -uo pipefail
CALL=${CALL:-1}; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export R=$PWD/runs/device TORCHINDUCTOR_CACHE_DIR=$PWD/runs/inductor-cache; mkdir -p "$R" "$TORCHINDUCTOR_CACHE_DIR"
echo "call $CALL; run folders already here: $(ls "$R" 2>/dev/null | tr '\n' ' ')"
TA="--amp bf16 --channels-last --compile reduce-overhead"
if [ "$CALL" = 1 ]; then
  export AFTER1='timeout 175 python3 bench/check_srsnet_compile.py --device cuda --tiny --size 256 --batch 8 --steps 5 --budget 110 > $OUT/check_srsnet_compile.md 2>&1; tail -n 25 $OUT/check_srsnet_compile.md;
    mkdir -p $OUT/srs; LEFT=$((LEFT - 185)); OUT=$OUT/srs GPU=$GPU CELLS="bf16cl:RS ro+chk:RS ro:RS" LIMIT=$((LEFT - 15)) BUDGET=$((LEFT - 75)) bash scripts/device/srsnet_bench.sh'
  J1="1|-|srs-check||||"
else
  J1="1|sirst-srsnet|srs|3|1|--data-root .devcache/sirst256.npz|"
fi
MPS=1 DEADLINE=${DEADLINE:-520} TRAIN_ARGS="$TA" CACHE=.devcache/busi256.npz \
  bash scripts/device/tables.sh "0|busi-mobileutr|mu-augrel|3|1|--seeds 41,42|--augment released" "$J1"
[ -d "$OUT/srs" ] && tar -C "$OUT" -czf "$OUT/srs.tar.gz" srs && rm -rf "$OUT/srs"   # at most 8 files come back
ls -la "$OUT"
