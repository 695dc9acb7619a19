#!/usr/bin/env bash
# SRSNet training-step speed on one GPU (issue 18): where the time of phase 1 (R) and phase 2 (frozen R + S, with and
# without DPConv) goes, and what bf16 + channels_last, torch.compile and CUDA graphs buy. The Python is
# bench/bench_srsnet.py (see its --help); this script only orders the rows to fit the time and collects the output.
# Run from the repo root on a fresh GPU box (torch + CUDA + Triton), while the host's other GPU may be training:
#
#     GPU=1 bash scripts/device/srsnet_bench.sh          # < 4 minutes; writes under $OUT
#
# 1. a profile of the eager bf16 + channels_last phase-2 step (top-15 CUDA kernels, GPU busy time vs wall time);
# 2. the table: eager rows (fp32; bf16 + channels_last, also with the engine's per-step checks), then compile(default)
#    and compile(reduce-overhead) rows model by model (RS = phase 2 with DPConv first, then R, then S without DPConv),
#    then compiled inference. No new row starts after $BUDGET s; whatever is done when $LIMIT s run out is in the table.
# Knobs (env): GPU (1), OUT (runs/srsnet_bench), BUDGET (135), LIMIT (185), STEPS (20), SIZE (256), BATCH (8),
# MODELS ("RS R S"), CONFIGS ("fp32 bf16cl bf16cl+chk compile ro"), DEVICE (cuda), EXTRA (more bench arguments);
# SAVE_INDUCTOR=1 returns the Inductor cache as $OUT/srs_inductor_cache.tar.gz (15-MiB parts .partNN when larger; carry
# it/them next time as .devcache/srs_inductor_cache.tar.gz[.partNN]: the same torch, Triton and GPU then skip most of
# the compile time). CPU dry run of the script itself (seconds):
#     DEVICE=cpu GPU= SIZE=32 BATCH=2 STEPS=1 CONFIGS="fp32 bf16cl" EXTRA=--tiny bash scripts/device/srsnet_bench.sh
set -uo pipefail
OUT=${OUT:-runs/srsnet_bench}; mkdir -p "$OUT"
export CUDA_VISIBLE_DEVICES=${GPU-1} PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-8}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/srs-inductor-cache}; mkdir -p "$TORCHINDUCTOR_CACHE_DIR"
IC=${INDUCTOR_CACHE:-.devcache/srs_inductor_cache.tar.gz}
if ls "$IC".part* >/dev/null 2>&1; then cat "$IC".part* > /tmp/srs_ic.tar.gz; IC=/tmp/srs_ic.tar.gz; fi
[ -f "$IC" ] && tar -xzf "$IC" -C "$TORCHINDUCTOR_CACHE_DIR" && echo "compile cache restored from $IC"
PY=${PYTHON:-python3}; DEV=${DEVICE:-cuda}; read -ra EX <<< "${EXTRA:-}"
T0=$(date +%s)
nvidia-smi --query-gpu=index,name,memory.used,utilization.gpu --format=csv,noheader 2>/dev/null | sed 's/^/GPU (all of the host): /'
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"

# 1. where the eager phase-2 step spends its GPU time (no compile: ~15 s)
timeout 60 "$PY" bench/bench_srsnet.py --device "$DEV" --size "${SIZE:-256}" --batch "${BATCH:-8}" --steps 10 --warmup 3 \
  --profile bf16cl --models RS "${EX[@]}" 2>&1 | grep -v "^STAGE\|profiler_st" | tee "$OUT/profile.md"

# 2. the table (rows in $OUT/table.md as they finish)
timeout "${LIMIT:-185}" "$PY" bench/bench_srsnet.py --device "$DEV" --size "${SIZE:-256}" --batch "${BATCH:-8}" \
  --steps "${STEPS:-20}" --warmup 3 --configs ${CONFIGS:-fp32 bf16cl bf16cl+chk compile ro} --models ${MODELS:-RS R S} --infer RS \
  --budget "${BUDGET:-135}" --out "$OUT" "${EX[@]}" > "$OUT/bench.log" 2>&1
rc=$?
grep -v "^\s*$" "$OUT/bench.log" | grep -v "Warning\|warn(" | tail -n 40 | grep -v "^|" | cut -c1-220
[ $rc = 124 ] && echo "(the table run hit the ${LIMIT:-185} s limit: the rows below are those finished)"
if [ "${SAVE_INDUCTOR:-0}" = 1 ]; then
  tar -czf /tmp/srs_ic_out.tar.gz -C "$TORCHINDUCTOR_CACHE_DIR" . && du -h /tmp/srs_ic_out.tar.gz
  if [ "$(stat -c %s /tmp/srs_ic_out.tar.gz)" -gt 15728640 ]; then split -b 15m -d /tmp/srs_ic_out.tar.gz "$OUT/srs_inductor_cache.tar.gz.part"
  else mv /tmp/srs_ic_out.tar.gz "$OUT/srs_inductor_cache.tar.gz"; fi
fi
echo; echo "== total $(( $(date +%s) - T0 )) s"; echo
cat "$OUT/table.md" 2>/dev/null || echo "no table written (see $OUT/bench.log)"
