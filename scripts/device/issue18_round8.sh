#!/usr/bin/env bash
# Issue 18, eighth round (prepared 2026-11-30, fourth session; not yet run): three calls in a row on one warm 2-GPU
# machine, as issue18_round7.sh (run folders and the Inductor cache in the ignored runs/, kept between calls; each call
# resumes every run from its last.pt). Both tables should finish within the three calls.
#   GPU 0: `reproduce busi-mobileutr --seeds 43`: a third seed of the base table at full length (released augmentation
#     draw, the default). Seeds 41 and 42 give 72.67 +- 1.94 IoU / 81.19 +- 2.07 F1 over 3 splits x 2 seeds, 0.21 IoU
#     under the published 72.88 (bench/RESULTS.md, fifth round). ~730 s for three at once under MPS (fifth round).
#   GPU 1: `reproduce busi-mobileutr-l --seeds 42`: a second seed of MobileUtr-L (seed 41 with the released draw:
#     73.61 +- 2.61, seventh round). ~1050 s for three at once under MPS (seventh round).
#   Once a GPU's table is done (and more than 60 s are left): bench/bench_engine_step.py, the first GPU timing of the
#     deferred finite check (rows synced = finite_check_every 1, engine = 16; 2026-11-30 the per-step sync cost 16 %),
#     MobileUtr on GPU 0, MobileUtr-L on GPU 1. Call 1 first runs tests/test_engine_finite.py (its CUDA tests: the fused
#     kernels skip the same updates deferred as synced).
# Usage: CALL=1 bash scripts/device/issue18_round8.sh, then CALL=2 and CALL=3 at once after each call returns (the machine
# is given back 30 s after a call). Kind nvidia-h200-x2; carry .devcache/busi256.npz. After the last call: untar
# $OUT/mu-s43.tar.gz and $OUT/mul-s42.tar.gz into runs/reproduce/{busi-mobileutr-s43,busi-mobileutr-l-s42} and run
# `medseg-tutor reproduce <table> --seeds S --out runs/reproduce/<folder> --table-only --machine "2 x NVIDIA H200"`.
set -uo pipefail
CALL=${CALL:-1}; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export R=$PWD/runs/device TORCHINDUCTOR_CACHE_DIR=$PWD/runs/inductor-cache; mkdir -p "$R" "$TORCHINDUCTOR_CACHE_DIR"
echo "call $CALL; run folders already here: $(ls "$R"/mu-s43 "$R"/mul-s42 2>/dev/null | tr '\n' ' ')"
export AFTER0='timeout $((LEFT - 10)) python3 bench/bench_engine_step.py --model mobileutr --out $OUT/engine_step_mu.md > $OUT/engine_step_mu.log 2>&1; tail -n 8 $OUT/engine_step_mu.log'
export AFTER1='timeout $((LEFT - 10)) python3 bench/bench_engine_step.py --model mobileutr_l --out $OUT/engine_step_mul.md > $OUT/engine_step_mul.log 2>&1; tail -n 8 $OUT/engine_step_mul.log'
if [ "$CALL" = 1 ] && python3 -c "import pytest" 2>/dev/null; then   # the deferred finite check with the CUDA fused kernels (SGD, AdamW), before anything trains with it
  timeout 120 python3 -m pytest -q -rs tests/test_engine_finite.py > "$OUT/test_engine_finite.log" 2>&1; tail -n 3 "$OUT/test_engine_finite.log"
fi
MPS=1 DEADLINE=${DEADLINE:-520} TRAIN_ARGS="--amp bf16 --channels-last --compile reduce-overhead" CACHE=.devcache/busi256.npz \
  bash scripts/device/tables.sh "0|busi-mobileutr|mu-s43|3|1|--seeds 43|" "1|busi-mobileutr-l|mul-s42|3|1|--seeds 42|"
ls -la "$OUT"
