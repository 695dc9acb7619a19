#!/usr/bin/env bash
# MobileUtr on BUSI, official split FOLD (default 1; FOLD=2 / 3 for the others), full mobileutr-busi recipe (SGD 0.01 / 0.9 / 1e-4, poly 0.9, batch 8, 0.5 BCE + Dice,
# best val IoU, 300 epochs) on one GPU from the carried device cache, then the engine's training throughput at 256²
# (fp32 vs bf16 + channels_last (+ compile)). Run from the repo root with .devcache/ carried
# (python tools/make_devcache.py writes it: 41 MiB). Everything goes to $OUT. Must finish in < 8 minutes:
# the training run has a time budget (BUDGET s, default 220); if 300 epochs do not fit, it runs fewer, re-plans the poly
# schedule to end there, and says so (line "time budget ...", and "epochs" in the summary).
set -uo pipefail
OUT=${OUT:-runs/device}; mkdir -p "$OUT"
PY=${PY:-python}
BUDGET=${BUDGET:-220}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-300}
FOLD=${FOLD:-1}                # BUSI split 1, 2 or 3
EXTRA=${EXTRA:-}               # e.g. EXTRA="--compile" to compile the model in the recipe run
CACHE=.devcache/busi256.npz
CLI="$PY scripts/device/cli.py"
export OMP_NUM_THREADS=8 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
if [ ! -f "$CACHE" ]; then
  echo "no $CACHE: building it from ${MEDSEG_TUTOR_DATA:-../shared/data}"
  $PY tools/make_devcache.py --data-root "${MEDSEG_TUTOR_DATA:-../shared/data}" || { echo "no device cache and no data: stop"; exit 2; }
fi

echo "== 1. mobileutr-busi, split $FOLD, bf16 + channels_last, budget ${BUDGET} s =="
T0=$(date +%s)
$CLI train --recipe mobileutr-busi --data-root "$CACHE" --fold "$FOLD" --out "$OUT/busi$FOLD" --epochs "$EPOCHS" --amp bf16 \
    --channels-last --time-budget "$BUDGET" --no-progress --device "$DEVICE" $EXTRA 2>&1 | tee "$OUT/busi${FOLD}_train.log" | \
    awk 'NR<=3 || /time budget|best val|rror/ || NR%25==0'
T1=$(date +%s)
$CLI eval --ckpt "$OUT/busi$FOLD/best.pt" --data-root "$CACHE" --fold "$FOLD" --device "$DEVICE" --json > "$OUT/busi${FOLD}_eval.json" || true

echo "== 2. throughput =="
[ -n "${SKIP_BENCH:-}" ] || timeout 170 $PY bench/bench_train.py --batch-sizes 8 32 --compile default reduce-overhead --compile-batch-sizes 8 --steps 40 --out "$OUT/throughput.md" 2>&1 | tail -n 30

echo "== summary =="
echo "$((T1 - T0))" > "$OUT/busi${FOLD}_wall.txt"
$PY scripts/device/summarize_runs.py "$OUT" "busi$FOLD" --table "$OUT/throughput.md"
echo "published (Mobile U-ViT, 3-split mean, Benchmarks README): IoU 72.88 ± 2.72, F1 81.18 ± 3.05"
