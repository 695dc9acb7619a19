#!/usr/bin/env bash
# The full mobileutr-busi recipe (300 epochs, SGD 0.01 / 0.9 / 1e-4, poly 0.9, batch 8, 0.5 BCE + Dice, best val IoU) on
# the official BUSI splits, on a 2-GPU machine: split 1 alone on GPU 0 (its time is the clean 1-GPU figure that
# train_busi_ddp.sh compares against), GPU1_SPLITS (default '2 3') side by side on GPU 1 (with two, a shared GPU's times).
# Then, on GPU 0, the engine's throughput table (fp32 vs bf16 + channels_last (+ compile)).
# bf16 + channels_last + torch.compile (MODE, default reduce-overhead = CUDA graphs; falls back to plain compile if that
# fails). Each run has a time budget (BUDGET1 / BUDGET23 s): if 300 epochs don't fit, it runs fewer and says so.
# Needs .devcache/busi256.npz (python tools/make_devcache.py). Results: $OUT/summary.txt and $OUT/busi_runs.tar.gz.
set -uo pipefail
OUT=${OUT:-runs/device}; mkdir -p "$OUT"; R=${R:-/tmp/busi}; mkdir -p "$R"
PY=${PY:-python3}; MODE=${MODE:-reduce-overhead}; EPOCHS=${EPOCHS:-300}
BUDGET1=${BUDGET1:-420}; BUDGET23=${BUDGET23:-520}; BENCH_S=${BENCH_S:-110}; GPU1_SPLITS=${GPU1_SPLITS:-2 3}   # BENCH_S=0: no throughput table
CACHE=.devcache/busi256.npz
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"

train() {  # fold gpu budget compile-flags...: one training run, its output appended to its log
  local f=$1 g=$2 b=$3; shift 3
  CUDA_VISIBLE_DEVICES=$g $PY scripts/device/cli.py train --recipe mobileutr-busi --data-root $CACHE --fold $f --out $R/busi$f \
      --epochs $EPOCHS --amp bf16 --channels-last "$@" --time-budget $b --no-progress --device cuda >> $R/busi${f}_train.log 2>&1
}
split() {  # fold gpu budget: train (falling back to plain --compile), then evaluate the best checkpoint
  local f=$1 g=$2 b=$3 t0=$(date +%s)
  train $f $g $b --compile $MODE
  if [ ! -f $R/busi$f/best.pt ]; then
    echo "split $f: compile mode $MODE failed (tail below); retrying with plain --compile" | tee -a $R/busi${f}_train.log
    tail -n 5 $R/busi${f}_train.log
    rm -rf $R/busi$f; t0=$(date +%s)
    train $f $g $((b - 60)) --compile
  fi
  echo "$(($(date +%s) - t0))" > $R/busi${f}_wall.txt
  CUDA_VISIBLE_DEVICES=$g $PY scripts/device/cli.py eval --ckpt $R/busi$f/best.pt --data-root $CACHE --fold $f --device cuda --json \
      > $R/busi${f}_eval.json 2> $R/busi${f}_eval.err
}

split 1 0 $BUDGET1 &
P1=$!
P23=""
for f in $GPU1_SPLITS; do split $f 1 $BUDGET23 & P23="$P23 $!"; sleep 20; done
wait $P1
echo "== split 1 done; throughput on GPU 0 =="
[ "$BENCH_S" -gt 0 ] && CUDA_VISIBLE_DEVICES=0 timeout $BENCH_S $PY bench/bench_train.py --batch-sizes 8 32 --compile default $MODE --compile-batch-sizes 8 \
    --steps 40 --out $R/throughput.md > $R/throughput.log 2>&1
wait $P23

$PY scripts/device/summarize_runs.py "$R" busi1 $(printf 'busi%s ' $GPU1_SPLITS) --table "$R/throughput.md" \
    --published "(published Mobile U-ViT: 72.88 ± 2.72 / 81.18 ± 3.05, ± over splits)" | tee "$R/summary.txt"
grep -h -E "time budget|rror|retrying" $R/busi*_train.log | head -20
cp $R/summary.txt "$OUT/"
(cd $R && tar czf "$OUT/busi_runs.tar.gz" --exclude='*.pt' .)
