#!/usr/bin/env bash
# Issue 18, sixth round (run 2026-11-30, third session: bench/RESULTS.md "sixth round"): the whole `sirst-srsnet` table, compiled, over both GPUs of
# one warm 2-GPU machine, in three calls back to back (as issue18_round4/5.sh: run folders and the Inductor cache in the
# ignored runs/, kept between calls; each call resumes every run from its last.pt).
#   One `reproduce sirst-srsnet --gpus 0,1 --per-gpu 3`: the three R runs (phase 1, 100 epochs) first, then the six S runs
#   (phase 2, 500 epochs, with and without DPConv, seeds 41-43), three at once on each GPU under CUDA MPS, with
#   `--compile reduce-overhead` (the SRS networks turn Inductor's mix-order reduction off: SRSNET_COMPILE_OPTIONS, nb 21).
#   Estimate (bench/RESULTS.md, fifth round): compiled S alone 148.8 img/s, 256 training images, so 500 epochs ~860 s alone;
#   three at once per GPU ~1500 s if MPS gives 1.7x; plus R (~100 s) and a cold compile (~220 s). Three calls of ~520 s
#   may end the S runs short of 500 epochs: the table then says "N of 500" per row. Nothing survives to a later session
#   (an S last.pt is ~80 MB), so a row not finished in this session restarts from scratch in another.
# Usage: CALL=1 bash scripts/device/issue18_round6.sh, then CALL=2 and CALL=3 at once after each call returns (the machine
# is given back 30 s after a call). Carry .devcache/sirst256.npz. After the calls: untar $OUT/srs.tar.gz of the last
# call into runs/reproduce/sirst-srsnet and run `medseg-tutor reproduce sirst-srsnet --table-only --machine "2 x NVIDIA H200"`.
set -uo pipefail
CALL=${CALL:-1}; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export R=$PWD/runs/device TORCHINDUCTOR_CACHE_DIR=$PWD/runs/inductor-cache; mkdir -p "$R" "$TORCHINDUCTOR_CACHE_DIR"
echo "call $CALL; run folders already here: $(ls "$R"/srs 2>/dev/null | tr '\n' ' ')"
MPS=1 DEADLINE=${DEADLINE:-520} TRAIN_ARGS="--amp bf16 --channels-last --compile reduce-overhead" CACHE=.devcache/sirst256.npz \
  bash scripts/device/tables.sh "0,1|sirst-srsnet|srs|3|1||"
ls -la "$OUT"
