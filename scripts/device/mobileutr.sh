#!/usr/bin/env bash
# MobileUtr throughput on the device (one H100): training images/s at 256x256, batch 8 and 32, and inference images/s
# at batch 1 and 32, for the released computation vs fp32 / bf16 autocast / channels_last / torch.compile (same
# weights, one process), then a kernel profile of the released path and of bf16+channels_last at batch 8.
# Run from the repo root:  bash scripts/device/mobileutr.sh     (< 6 minutes; log + JSON under $OUT)
# Knobs (env): MU_VARIANT (base | l), MU_BUDGET (250 s for the timed rows; compiled rows beyond it are skipped),
# MU_REPS (30), MU_CONFIGS (all), MU_PROFILE ("released bf16+cl"; empty = no profile), MU_PARITY (150 training steps of
# released vs bf16+cl from the same weights on the same batches: BUSI from .devcache/busi256.npz if carried, else synthetic).
set -euo pipefail
OUT=${OUT:-runs/mobileutr_device}; mkdir -p "$OUT"
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
VARIANT=${MU_VARIANT:-base}; BUDGET=${MU_BUDGET:-250}; REPS=${MU_REPS:-30}
PROFILE=${MU_PROFILE-released bf16+cl}
CONFIGS=()
if [ -n "${MU_CONFIGS:-}" ]; then CONFIGS=(--configs $MU_CONFIGS); fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" || true
# correctness on the GPU first (fast channels_last path == released NCHW path, fp32 with TF32 off; bf16 close): ~15 s
if "$PY" -c "import pytest" 2>/dev/null; then
    timeout 90 "$PY" -m pytest -q -x tests/test_mobileutr.py -k "cuda or sdpa or fast_equals" 2>&1 | tail -3 | tee "$OUT/gpu_tests.log" || true
fi
timeout 320 "$PY" bench/bench_mobileutr.py --variant "$VARIANT" --budget "$BUDGET" --reps "$REPS" ${CONFIGS[@]+"${CONFIGS[@]}"} \
    --parity "${MU_PARITY:-150}" ${PROFILE:+--profile $PROFILE} --json "$OUT/bench_mobileutr_$VARIANT.json" 2>&1 | tee "$OUT/bench_mobileutr_$VARIANT.log"
