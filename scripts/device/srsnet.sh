#!/usr/bin/env bash
# SRSNet on the device: phase 1, phase 2 and the "S with vs without DPConv" ablation through the package's Trainer,
# plus a DPConv micro-benchmark (the Python is bench/srsnet_device.py; see its --help).
# Data: .devcache/{busi256,sirst256}.npz (python tools/make_devcache.py); a missing cache is replaced by a synthetic
# stand-in and the table says so. Run from the repo root:  bash scripts/device/srsnet.sh   (< 6 minutes on one H100)
# Knobs (env): SRS_SIZE (128), SRS_BS (8), SRS_STEPS1 (600), SRS_STEPS2 (1500), SRS_SEC1 (25), SRS_SEC2 (95),
# SRS_SETS (busi,sirst), SRS_DPCONV_IMPL (grouped|affine), SRS_OFFICIAL_BN (0; 1 = R's BatchNorm in train mode, as released).
set -euo pipefail
OUT=${OUT:-runs/srsnet_device}; mkdir -p "$OUT"
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
extra=(); [ "${SRS_OFFICIAL_BN:-0}" = 1 ] && extra+=(--official-bn)
"$PY" bench/srsnet_device.py --out "$OUT" --size "${SRS_SIZE:-128}" --batch-size "${SRS_BS:-8}" \
  --steps1 "${SRS_STEPS1:-600}" --steps2 "${SRS_STEPS2:-1500}" --sec1 "${SRS_SEC1:-25}" --sec2 "${SRS_SEC2:-95}" \
  --sets "${SRS_SETS:-busi,sirst}" --dpconv-impl "${SRS_DPCONV_IMPL:-grouped}" "${extra[@]}" 2>&1 | tee "$OUT/srsnet.log"
