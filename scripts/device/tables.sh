#!/usr/bin/env bash
# Several `medseg-tutor reproduce` tables at once on one GPU machine, optionally under CUDA MPS (so that the processes'
# small kernels overlap instead of time-slicing), with one shared torch.compile cache warmed first.
#
#   MPS=1 DEADLINE=480 WARM="mobileutr-busi" bash scripts/device/tables.sh \
#       "0|busi-mobileutr|mu-s41|3|1|--seeds 41|" "1|busi-mobileutr|mu-rel-s41|3|1|--seeds 41|--normalize released"
#
# Each job is "GPU|TABLE|NAME|PER_GPU with MPS|PER_GPU without MPS|more reproduce arguments|more train arguments"; every job gets
# --data-root $CACHE (default .devcache/busi256.npz), --deadline $DEADLINE and $TRAIN_ARGS (default: fp32,
# --compile reduce-overhead) in front of its own --train-args. WARM: recipes to compile once, one epoch each, before the
# jobs start (their compiled graphs land in the shared Inductor cache; measured once: 203 s with 4 compile threads, no
# better than letting the jobs compile side by side - carry the cache instead, below). Results: $OUT/<NAME>.tar.gz (every run folder
# without *.pt, table.md, curves.png), $OUT/smi.csv (GPU use every 10 s), $OUT/tables.log.
# Compile cache across calls: with SAVE_INDUCTOR=1 the Inductor cache comes back as $OUT/inductor_cache.tar.gz (or as
# 15-MiB parts inductor_cache.tar.gz.partNN); copy it (them) to .devcache/ and carry it next time: the same torch, Triton and GPU then
# skip the ~200 s that compiling took per process (measured 2026-11-29: six processes compiling at once on 32 cores).
# A job whose TABLE is '-' runs no table: its GPU goes straight to AFTER<gpu> (e.g. "1|-|bench||||" with AFTER1=...).
# A job's GPU may be a list ("0,1|sirst-srsnet|..."): one reproduce then schedules its runs over both GPUs (PER_GPU each).
# AFTER<gpu> (e.g. AFTER1='bash scripts/device/srsnet_bench.sh'; AFTER0_1 for "0,1"): a command run on that GPU once its job has returned, if
# more than 60 s are left before DEADLINE; it sees GPU, LEFT (seconds left) and CUDA_VISIBLE_DEVICES. R (run folders) and
# TORCHINDUCTOR_CACHE_DIR may point into the repo's ignored runs/: on a machine kept warm between calls they stay, so a
# table stopped at one call's deadline resumes (from each run's last.pt) in the next call, compiling from a warm cache.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; R=${R:-/tmp/tables}; mkdir -p "$R"
CACHE=${CACHE:-.devcache/busi256.npz}; DEADLINE=${DEADLINE:-480}; TRAIN_ARGS=${TRAIN_ARGS:---compile reduce-overhead}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-8}
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor-cache}; mkdir -p "$TORCHINDUCTOR_CACHE_DIR"
IC=${INDUCTOR_CACHE:-.devcache/inductor_cache.tar.gz}
if ls "$IC".part* >/dev/null 2>&1; then cat "$IC".part* > /tmp/ic.tar.gz; IC=/tmp/ic.tar.gz; fi   # a cache that came back in parts
[ -f "$IC" ] && tar -xzf "$IC" -C "$TORCHINDUCTOR_CACHE_DIR" && echo "compile cache restored from $IC ($(du -sh "$TORCHINDUCTOR_CACHE_DIR" | cut -f1))"
exec > >(tee -a "$OUT/tables.log") 2>&1
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"
nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv -l 10 > "$OUT/smi.csv" 2>/dev/null &
SMI=$!

USE_MPS=0
if [ "${MPS:-0}" = 1 ]; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d && timeout 90 python3 -c "import torch; x = torch.ones(4, device='cuda'); print('MPS probe', (x + 1).sum().item())"; then
    USE_MPS=1; stamp "MPS daemon running"
  else
    echo quit | nvidia-cuda-mps-control 2>/dev/null; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    stamp "MPS unavailable: processes time-slice the GPU"
  fi
fi

for rec in ${WARM:-}; do   # compile each recipe's training and validation graphs once, into the shared cache
  stamp "warming the compile cache: $rec"
  CUDA_VISIBLE_DEVICES=0 timeout 400 python3 -m medseg_tutor train --recipe "$rec" --data-root "$CACHE" --epochs 1 \
      --out "$R/warm-$rec" --overwrite --no-progress $TRAIN_ARGS > "$R/warm-$rec.log" 2>&1 || tail -n 5 "$R/warm-$rec.log"
  stamp "warm: $(grep -c . "$R/warm-$rec/log.csv" 2>/dev/null) log lines"
done

pids=()
for job in "$@"; do
  IFS='|' read -r gpu table name k_mps k_plain more ta <<< "$job"; read -ra MORE <<< "$more"
  k=$([ $USE_MPS = 1 ] && echo "$k_mps" || echo "$k_plain")
  left=$(( DEADLINE - ($(date +%s) - T0) ))
  stamp "job $name: $table on GPU $gpu, $k at once, deadline in ${left} s; $more"
  after_var="AFTER${gpu//,/_}"; after=${!after_var:-}   # a job on GPUs "0,1" (one reproduce over both) reads AFTER0_1
  ( [ "$table" = - ] || python3 -m medseg_tutor reproduce "$table" --out "$R/$name" --data-root "$CACHE" --gpus "$gpu" --per-gpu "$k" \
      --deadline "$left" "${MORE[@]}" --train-args "$TRAIN_ARGS $ta" > "$R/$name.log" 2>&1
    LEFT=$(( DEADLINE - ($(date +%s) - T0) ))
    if [ -n "$after" ] && [ "$LEFT" -gt 60 ]; then   # the GPU is free before the deadline: its follow-up command
      stamp "GPU $gpu free, $LEFT s left: $after"; GPU=$gpu LEFT=$LEFT CUDA_VISIBLE_DEVICES=$gpu bash -c "$after"; stamp "GPU $gpu follow-up returned"
    fi ) &
  pids+=($!)
done
wait "${pids[@]}"
stamp "all jobs returned"
kill $SMI 2>/dev/null
[ $USE_MPS = 1 ] && echo quit | nvidia-cuda-mps-control
for job in "$@"; do
  IFS='|' read -r gpu table name _ <<< "$job"
  [ "$table" = - ] && continue
  cp "$R/$name.log" "$R/$name/" 2>/dev/null
  echo "=== $name"; cat "$R/$name/table.md" 2>/dev/null | head -40
  tar -C "$R" --exclude='*.pt' -czf "$OUT/$name.tar.gz" "$name"
done
if [ "${SAVE_INDUCTOR:-0}" = 1 ]; then
  tar -czf /tmp/ic_out.tar.gz -C "$TORCHINDUCTOR_CACHE_DIR" .
  echo "compile cache: $(du -h /tmp/ic_out.tar.gz | cut -f1) compressed"
  if [ "$(stat -c %s /tmp/ic_out.tar.gz)" -gt $((15 * 1024 * 1024)) ]; then   # a file comes back only up to 16 MiB
    split -b 15m -d /tmp/ic_out.tar.gz "$OUT/inductor_cache.tar.gz.part"          # restored above with cat parts | tar
  else mv /tmp/ic_out.tar.gz "$OUT/inductor_cache.tar.gz"; fi
fi
ls -la "$OUT"
