#!/usr/bin/env bash
# SRSNet training-step speed on one GPU (issue 18): where the time of phase 1 (R) and phase 2 (frozen R + S, with and
# without DPConv) goes, and what bf16 + channels_last, torch.compile and CUDA graphs buy. The Python is
# bench/bench_srsnet.py (see its --help); this script only orders the rows to fit the time and collects the output.
# Run from the repo root on a fresh GPU box (torch + CUDA + Triton), while the host's other GPU may be training:
#
#     GPU=1 bash scripts/device/srsnet_bench.sh          # < 4 minutes; writes under $OUT
#
# (On a one-GPU machine pass GPU=0.) Before 2026-11-30 the compiled bf16 rows (compile:*, ro:*) trained NaN from step 1
# (the attention gates' amax global max; see bench/check_srsnet_compile.py): their speeds of that day are not results.
# Since then bench_srsnet reports such a row as NON-FINITE.
#
# Compiled rows and Inductor's mix-order reduction (2 x H200 host, torch 2.11.0+cu130, 2026-11-30). With the gates'
# max fixed, the compiled phase-2 step (ro:RS, bf16 + channels_last, batch 8, 256²) FAILED to compile: Triton
# "NameError('tmp12 is not defined')" in the Inductor kernel triton_per_fused__native_batch_norm_legit_functional_
# convolution_backward_max_mul_..._threshold_backward_4, a mix-order reduction kernel (it writes a workspace ws_ptr and
# accumulates accum0/accum1; that Inductor feature is on by default since torch 2.10). The eager bf16 + cl row of the same
# call: 49.0 img/s, 163.3 ms/step, peak 5314 MiB. With mix-order reduction off (then run as
# TORCHINDUCTOR_MIX_ORDER_REDUCTION=0 OUT=... GPU=0 CELLS="ro:RS bf16cl:RS" LIMIT=235 BUDGET=200 bash scripts/device/srsnet_bench.sh)
# the ro:RS row compiled and trained finite: 148.8 img/s, 53.8 ms/step (~3.0x the eager row above), warm-up incl. a cold
# compile 217.6 s, peak 3853 MiB. compile:RS (default mode, GPU 1, same time) did not finish compiling inside 235 s.
# Since then bench_srsnet's compiled rows compile as the SRS networks train: engine.compile_module with the options the
# networks declare (nets.srsnet SRSNET_COMPILE_OPTIONS = {'triton.mix_order_reduction': False}), whatever the environment
# says; the table header says so.
# To reproduce the failure: EXTRA="--mix-order on" (the option set to True explicitly). A cold compile of the full-size
# phase-2 step takes ~3.5 minutes per compiled row: give compiled rows LIMIT/BUDGET for it, or carry the Inductor cache.
#
# 1. the table, rows by priority: phase 2 (RS) under the engine's current setting (bf16 + channels_last, eager) and fp32,
#    then compiled: per residual block (regional: quickest to compile), whole network (default), whole network with CUDA
#    graphs (reduce-overhead); the cheap eager rows of R and S; the engine's per-step checks; compiled R; inference;
#    compiled S. No new row starts after $BUDGET s; the rows done when $LIMIT s run out are in the table ($OUT/table.md
#    is rewritten after every row). A whole-network compile of S may take minutes when the Inductor cache is cold: for
#    all rows, give the call 8 minutes (LIMIT=420 BUDGET=360) or carry the cache of a first call (SAVE_INDUCTOR=1).
# 2. if time is left: a profile of the eager bf16 + channels_last phase-2 step (top-15 CUDA kernels, GPU busy time, top-15 ATen ops by input shape).
# Knobs (env): GPU (1), OUT (runs/srsnet_bench), BUDGET (140), LIMIT (180), STEPS (20), SIZE (256), BATCH (8),
# CELLS (the rows, CONFIG:MODEL[:infer], see below), DEVICE (cuda), EXTRA (more bench arguments);
# SAVE_INDUCTOR=1 returns the Inductor cache as $OUT/srs_inductor_cache.tar.gz (15-MiB parts .partNN when larger; carry
# it/them next time as .devcache/srs_inductor_cache.tar.gz[.partNN]: the same torch, Triton and GPU then skip most of
# the compile time). CPU dry run of the script itself (seconds):
#     DEVICE=cpu GPU= SIZE=32 BATCH=2 STEPS=1 CELLS="bf16cl:RS fp32:RS bf16cl:R" EXTRA=--tiny bash scripts/device/srsnet_bench.sh
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

CELLS=${CELLS:-bf16cl:RS fp32:RS regional:RS compile:RS ro:RS bf16cl:R fp32:R bf16cl:S fp32:S bf16cl+chk:RS ro+chk:RS \
  regional:R compile:R ro:R bf16cl:RS:infer fp32:RS:infer compile:RS:infer regional:S compile:S ro:S}
# 1. the table
timeout "${LIMIT:-180}" "$PY" bench/bench_srsnet.py --device "$DEV" --size "${SIZE:-256}" --batch "${BATCH:-8}" \
  --steps "${STEPS:-20}" --warmup 3 --cells $CELLS --budget "${BUDGET:-140}" --out "$OUT" "${EX[@]}" > "$OUT/bench.log" 2>&1
rc=$?
grep -v "^\s*$" "$OUT/bench.log" | grep -v "Warning\|warn(" | tail -n 40 | grep -v "^|" | cut -c1-220
[ $rc = 124 ] && echo "(the table run hit the ${LIMIT:-180} s limit: the rows below are those finished)"
# 2. where the eager phase-2 step spends its GPU time (no compile: ~25 s), if there is time left
if [ $(( $(date +%s) - T0 )) -lt "${PROFILE_BEFORE:-$(( ${LIMIT:-180} + 10 ))}" ]; then
  timeout 40 "$PY" bench/bench_srsnet.py --device "$DEV" --size "${SIZE:-256}" --batch "${BATCH:-8}" --steps 5 --warmup 3 \
    --profile bf16cl --models RS "${EX[@]}" 2>&1 | grep -v "^STAGE\|profiler_st" > "$OUT/profile.md"
else echo "no time left for the profile" > "$OUT/profile.md"; fi
if [ "${SAVE_INDUCTOR:-0}" = 1 ]; then
  tar -czf /tmp/srs_ic_out.tar.gz -C "$TORCHINDUCTOR_CACHE_DIR" . && du -h /tmp/srs_ic_out.tar.gz
  if [ "$(stat -c %s /tmp/srs_ic_out.tar.gz)" -gt 15728640 ]; then split -b 15m -d /tmp/srs_ic_out.tar.gz "$OUT/srs_inductor_cache.tar.gz.part"
  else mv /tmp/srs_ic_out.tar.gz "$OUT/srs_inductor_cache.tar.gz"; fi
fi
echo; echo "== total $(( $(date +%s) - T0 )) s"; echo
cat "$OUT/table.md" 2>/dev/null || echo "no table written (see $OUT/bench.log)"
echo; grep -v "^SRSNet training step" "$OUT/profile.md" | tail -n 40
