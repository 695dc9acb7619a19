#!/usr/bin/env bash
# Issue 18, fourth round (2026-11-29): full-length tables that need more than one 600-s device call. Three calls in a row
# on one warm 2-GPU machine; the run folders (with last.pt) and the Inductor cache stay in the repo's ignored runs/ between
# calls, so every stopped run resumes where it stopped. Each call returns the tables so far (tables.sh's *.tar.gz).
#   CALL=1: GPU 1 first times the global-max op (bench_globalmax.py), then
#   every call: GPU 0 `reproduce busi-mobileutr-l` (3 splits at once under MPS), GPU 1 `reproduce busi-mobileutr --seeds 42`
#   (3 splits at once); once GPU 1's table is done, GPU 1 runs the SRSNet step benchmark in the time left (AFTER1),
#   and from call 3 on, once GPU 0's is, the odd-batch compile benchmark (AFTER0).
set -uo pipefail
CALL=${CALL:-1}; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export R=$PWD/runs/device TORCHINDUCTOR_CACHE_DIR=$PWD/runs/inductor-cache; mkdir -p "$R" "$TORCHINDUCTOR_CACHE_DIR"
echo "call $CALL; run folders already here: $(ls "$R" 2>/dev/null | tr '\n' ' ')"
if [ "$CALL" = 1 ]; then
  CUDA_VISIBLE_DEVICES=1 timeout 90 python3 bench/bench_globalmax.py > "$OUT/globalmax.md" 2>&1; tail -n 8 "$OUT/globalmax.md"
  CUDA_VISIBLE_DEVICES=1 timeout 60 python3 bench/bench_globalmax.py --dtype fp32 --layout contiguous >> "$OUT/globalmax.md" 2>&1
fi
export AFTER1='mkdir -p $OUT/srs; OUT=$OUT/srs GPU=$GPU LIMIT=$((LEFT - 15)) BUDGET=$((LEFT - 75)) bash scripts/device/srsnet_bench.sh'
[ "$CALL" -ge 3 ] && export AFTER0='timeout $((LEFT - 10)) python3 bench/bench_compile_odd.py --epochs 8 > $OUT/compile_odd.md 2>&1; tail -n 12 $OUT/compile_odd.md'
MPS=1 DEADLINE=${DEADLINE:-500} TRAIN_ARGS="--amp bf16 --channels-last --compile reduce-overhead" \
  bash scripts/device/tables.sh "0|busi-mobileutr-l|mul|3|1||" "1|busi-mobileutr|mu42|3|1|--seeds 42|"
[ -d "$OUT/srs" ] && tar -C "$OUT" -czf "$OUT/srs.tar.gz" srs && rm -rf "$OUT/srs"   # at most 8 files come back
ls -la "$OUT"
