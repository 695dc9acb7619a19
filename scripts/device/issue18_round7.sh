#!/usr/bin/env bash
# Issue 18, seventh round (prepared 2026-11-30, third session; ran 2026-11-30, fourth session: bench/RESULTS.md "seventh round"): three calls in a row on one warm 2-GPU
# machine, as issue18_round6.sh (run folders and the Inductor cache in the ignored runs/, kept between calls; each call
# resumes every run from its last.pt).
#   GPU 0: `reproduce busi-mobileutr-l`, three splits at once under MPS, compiled, with the released augmentation draw
#     (the default since 2026-11-30; the fourth round's 73.59 +- 1.34 drew uniformly). ~18.5 min of one GPU in the
#     fourth round, so it should finish within the three calls.
#   GPU 1: `reproduce busi-srsnet`, compiled: the three R runs (100 epochs of 452 images), then the six S runs, three at
#     once. Sixth-round rates (SIRST, 3 per GPU): R ~77 img/s, S ~65 img/s per process, ~1.4 s per epoch beyond the steps,
#     so R takes ~700 s and S reaches only ~80 of its 300 epochs: the rows will say "N of 300". A full-length SRSNet table
#     needs one S run per GPU on a 6-GPU machine for ~1600 s, or a longer budget (bench/RESULTS.md, sixth round).
# Usage: CALL=1 bash scripts/device/issue18_round7.sh, then CALL=2 and CALL=3 at once after each call returns (the machine
# is given back 30 s after a call). Carry .devcache/busi256.npz. After the last call: untar $OUT/mul.tar.gz and
# $OUT/bsrs.tar.gz into runs/reproduce/{busi-mobileutr-l,busi-srsnet} and run
# `medseg-tutor reproduce <table> --out runs/reproduce/<table> --table-only --machine "2 x NVIDIA H200"` for each.
set -uo pipefail
CALL=${CALL:-1}; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export R=$PWD/runs/device TORCHINDUCTOR_CACHE_DIR=$PWD/runs/inductor-cache; mkdir -p "$R" "$TORCHINDUCTOR_CACHE_DIR"
echo "call $CALL; run folders already here: $(ls "$R"/mul "$R"/bsrs 2>/dev/null | tr '\n' ' ')"
# GPU 0, once busi-mobileutr-l has finished (call 3, if more than 60 s are left): where the engine's step spends its time
# beyond the network (bench/bench_engine_step.py: bare step / Trainer.train_step / without the finite check's host sync /
# a whole epoch), MobileUtr compiled, so that a sync-free step is built only if it pays.
export AFTER0='timeout $((LEFT - 10)) python3 bench/bench_engine_step.py --out $OUT/engine_step.md > $OUT/engine_step.log 2>&1; tail -n 8 $OUT/engine_step.log'
MPS=1 DEADLINE=${DEADLINE:-520} TRAIN_ARGS="--amp bf16 --channels-last --compile reduce-overhead" CACHE=.devcache/busi256.npz \
  bash scripts/device/tables.sh "0|busi-mobileutr-l|mul|3|1||" "1|busi-srsnet|bsrs|3|1||"
ls -la "$OUT"
