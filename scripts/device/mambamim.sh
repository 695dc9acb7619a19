#!/usr/bin/env bash
# MambaMIM on the GPU, as thin calls of Python scripts (each has --help):
# (1) bench/mim_step_device.py: a full-size pre-training step (HyMamba base, 96³, four crops) through the Trainer with
#     each selective-scan implementation (mamba-ssm's kernel if installed, our Triton kernel, our chunked PyTorch scan),
#     ours vs the released semantics: step time and peak memory;
# (2) bench/bench_s6t.py: S6T on the GPU;
# (3) bench/mim_hippocampus.py run: pre-training on MSD hippocampus (+ a CT smoke run), then fine-tuning from the
#     pre-trained encoder vs from scratch, through the mambamim-pretrain / mambamim-finetune recipes.
# Needs .devcache/mim/{hippo,ct}.pt (python bench/mim_hippocampus.py prepare; carry .devcache). mamba-ssm: installed
# from the prebuilt wheel in .whl/prebuilt if present (see scripts/device/scan.sh), never built here.
# Run from the repo root:  bash scripts/device/mambamim.sh   (logs under $OUT; MIM_RUN_ARGS passes options to step 3)
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if ls .whl/prebuilt/mamba_ssm*.part* >/dev/null 2>&1 && ! python3 -c 'import selective_scan_cuda' 2>/dev/null; then
  whl=$(ls .whl/prebuilt/mamba_ssm*.part00 | sed 's/\.part00$//'); cat "$whl".part* > "/tmp/$(basename "$whl")"
  python3 -m pip install -q --no-deps --no-index "/tmp/$(basename "$whl")" && stamp "installed prebuilt $(basename "$whl")"
fi
python3 -c 'import mamba_ssm, selective_scan_cuda; print("mamba_ssm", mamba_ssm.__version__)' 2>/dev/null || echo "mamba-ssm not importable: its row is skipped"

stamp "1. full-size step timing"
python3 bench/mim_step_device.py --out "$OUT" 2>&1 | tee "$OUT/step.log"

stamp "2. S6T bench on the GPU (batch 16, C 384, 6³)"
python3 bench/bench_s6t.py --device cuda --reps 20 --ref-reps 2 2>&1 | tee "$OUT/bench_s6t.log"

stamp "3. pre-training and fine-tuning on MSD hippocampus"
python3 bench/mim_hippocampus.py run --out "$OUT/hippocampus" --device cuda ${MIM_RUN_ARGS:-} 2>&1 | tee "$OUT/hippocampus.log"

stamp "summary"
grep "^|" "$OUT/step.log"; grep "^|" "$OUT/bench_s6t.log"; grep "^|" "$OUT/hippocampus.log"
stamp "done"
