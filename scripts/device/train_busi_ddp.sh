#!/usr/bin/env bash
# DDP check on NGPU GPUs (default 2): mobileutr-busi split 1 with torchrun, the same global batch (8 = NGPU x 8/NGPU) and
# the same number of epochs as a 1-GPU run, then the 1-GPU run; prints both best val IoUs and times. Needs .devcache/.
# Run on a 2-GPU machine from the repo root: OUT=... bash scripts/device/train_busi_ddp.sh   (< 8 minutes with EPOCHS=60)
set -uo pipefail
OUT=${OUT:-runs/device}; mkdir -p "$OUT"
PY=${PY:-python}; NGPU=${NGPU:-2}; EPOCHS=${EPOCHS:-60}
CACHE=.devcache/busi256.npz
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
ARGS="train --recipe mobileutr-busi --data-root $CACHE --fold 1 --epochs $EPOCHS --amp bf16 --channels-last --no-progress"
T0=$(date +%s)
$PY -m torch.distributed.run --standalone --nproc_per_node="$NGPU" scripts/device/cli.py $ARGS --batch-size $((8 / NGPU)) \
    --out "$OUT/ddp$NGPU" 2>&1 | tee "$OUT/ddp$NGPU.log" | grep -E "best val|rror|epoch=($EPOCHS) "
T1=$(date +%s)
$PY scripts/device/cli.py $ARGS --out "$OUT/gpu1" --device cuda 2>&1 | tee "$OUT/gpu1.log" | grep -E "best val|rror|epoch=($EPOCHS) "
T2=$(date +%s)
echo "DDP x$NGPU: $((T1 - T0)) s wall; 1 GPU: $((T2 - T1)) s wall (both incl. start-up); speed-up $(python3 -c "print(round(($T2-$T1)/max(1,$T1-$T0),2))")x"
