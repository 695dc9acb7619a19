#!/usr/bin/env bash
# DDP check on NGPU GPUs (default 2): mobileutr-busi split FOLD with torchrun, the same global batch (8 = NGPU x 8/NGPU),
# the same epochs and flags as a 1-GPU run; then (unless SINGLE=0) the 1-GPU run. Prints both best val IoUs and times.
# EXTRA: more train flags, e.g. EXTRA="--compile reduce-overhead" (if the DDP run fails with them it is retried with
# FALLBACK, default "--compile"). BUDGET: the time budget of each run in s (fewer epochs if 300 don't fit; it says so).
# Needs .devcache/. Run on a 2-GPU machine from the repo root: OUT=... bash scripts/device/train_busi_ddp.sh
set -uo pipefail
OUT=${OUT:-runs/device}; mkdir -p "$OUT"; R=${R:-/tmp/ddp}; mkdir -p "$R"
PY=${PY:-python3}; NGPU=${NGPU:-2}; EPOCHS=${EPOCHS:-60}; FOLD=${FOLD:-1}; BUDGET=${BUDGET:-100000}
EXTRA=${EXTRA:-}; FALLBACK=${FALLBACK:---compile}; SINGLE=${SINGLE:-1}
CACHE=.devcache/busi256.npz
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
ARGS="train --recipe mobileutr-busi --data-root $CACHE --fold $FOLD --epochs $EPOCHS --amp bf16 --channels-last --no-progress --time-budget $BUDGET"
ddp() { $PY -m torch.distributed.run --standalone --nproc_per_node="$NGPU" scripts/device/cli.py $ARGS --batch-size $((8 / NGPU)) \
        --out "$R/ddp$NGPU" "$@" >> "$R/ddp$NGPU.log" 2>&1; }
T0=$(date +%s)
ddp $EXTRA
if [ ! -f "$R/ddp$NGPU/best.pt" ]; then
  echo "DDP with '$EXTRA' failed (tail below); retrying with '$FALLBACK'" | tee -a "$R/ddp$NGPU.log"; tail -n 8 "$R/ddp$NGPU.log"
  rm -rf "$R/ddp$NGPU"; T0=$(date +%s); ddp $FALLBACK
fi
T1=$(date +%s)
grep -E "time budget|best val|rror" "$R/ddp$NGPU.log" | tail -n 5
$PY scripts/device/cli.py eval --ckpt "$R/ddp$NGPU/best.pt" --data-root $CACHE --fold $FOLD --device cuda --json > "$R/ddp${NGPU}_eval.json" 2>/dev/null
echo "DDP x$NGPU: $((T1 - T0)) s wall (start-up and compile included)"
if [ "$SINGLE" != 0 ]; then
  $PY scripts/device/cli.py $ARGS $EXTRA --out "$R/gpu1" --device cuda > "$R/gpu1.log" 2>&1
  T2=$(date +%s)
  $PY scripts/device/cli.py eval --ckpt "$R/gpu1/best.pt" --data-root $CACHE --fold $FOLD --device cuda --json > "$R/gpu1_eval.json" 2>/dev/null
  echo "1 GPU: $((T2 - T1)) s wall; speed-up $($PY -c "print(round(($T2-$T1)/max(1,$T1-$T0),2))")x"
fi
$PY scripts/device/summarize_runs.py "$R" ddp$NGPU $([ "$SINGLE" != 0 ] && echo gpu1) | tee "$R/ddp_summary.txt"
cp "$R/ddp_summary.txt" "$OUT/" ; (cd "$R" && tar czf "$OUT/ddp_runs.tar.gz" --exclude='*.pt' .)
