#!/usr/bin/env bash
# GPU checks and benchmark of medseg_tutor.ssm (selective scan + Mamba block) against mamba-ssm's CUDA kernel.
# Run from the repo root on the device with the mamba-ssm sdist carried in .whl/ (see scripts/build_mamba_ssm.sh):
#   bash scripts/device/scan.sh            # logs under $OUT (default /tmp/out)
# If $OUT/../prebuilt or .whl/prebuilt holds a mamba_ssm wheel (split as part files), it is installed instead of building.
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'

# 1. mamba-ssm: prebuilt wheel (from an earlier run) or build from the sdist for this GPU only
if ls .whl/prebuilt/mamba_ssm*.part* >/dev/null 2>&1; then
  whl=$(ls .whl/prebuilt/mamba_ssm*.part00 | sed 's/\.part00$//'); cat "$whl".part* > "/tmp/$(basename "$whl")"
  python3 -m pip install -q --no-deps --no-index "/tmp/$(basename "$whl")" && stamp "installed prebuilt $(basename "$whl")"
else
  stamp "building mamba-ssm"
  WHEEL_DIR=/tmp/mamba_wheels bash scripts/build_mamba_ssm.sh .whl/mamba_ssm-*.tar.gz 2>&1 | grep -v "ptxas info\|bytes stack frame\|^ *$\|Used [0-9]* registers\|Compiling entry\|Function properties" | tail -15 > "$OUT/build.log"
  tail -3 "$OUT/build.log"
  mkdir -p "$OUT/prebuilt" && for w in /tmp/mamba_wheels/mamba_ssm*.whl; do split -b 15m -d "$w" "$OUT/prebuilt/$(basename "$w").part"; done
  stamp "built; wheel parts in \$OUT/prebuilt: $(ls "$OUT/prebuilt" | tr '\n' ' ')"
fi
python3 -c 'import selective_scan_cuda, mamba_ssm; print("mamba_ssm", mamba_ssm.__version__)' || echo "mamba-ssm NOT importable"

# pytest: carried as wheels in .whl/py when the image has none
python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install -q --no-deps --no-index .whl/py/*.whl

# 2. correctness on the GPU: every test (GPU-marked ones included)
stamp "pytest"
python3 -m pytest -q -rs tests/test_scan.py tests/test_mamba.py 2>&1 | tail -15 | tee "$OUT/pytest.log"

# 3. benchmark: fp32 at both shapes, then bf16 at the long shape without the slow PyTorch paths
stamp "bench fp32"
python3 bench/bench_scan.py --device cuda --ref-max-L 1024 2>&1 | tee "$OUT/bench.log"
stamp "triton block sizes (fwd+bwd at the long shape; output checked against the default config)"
python3 - <<'PY' 2>&1 | tee -a "$OUT/bench.log"
import sys, torch; sys.path.insert(0, 'bench')
import medseg_tutor.ssm.scan as S
from bench_scan import inputs, run_one
t = inputs(8, 1536, 4096, 16, 'cuda', torch.float32)
args = [t[k] for k in ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')]
ref = S.selective_scan(*args, delta_softplus=True, impl='triton')
for BD, TL in [(4, 32), (8, 32), (2, 64), (4, 64), (8, 16), (16, 16), (2, 128)]:
    S.TRITON_BD, S.TRITON_TL = BD, TL
    try:
        err = (S.selective_scan(*args, delta_softplus=True, impl='triton') - ref).abs().max().item()
        r = run_one('triton', t, 'cuda', 5)
        print(f"triton BD={BD:2d} TL={TL:3d}: fwd {r['fwd']:.3f} ms  fwd+bwd {r['fwd+bwd']:.3f} ms  max|diff| {err:.2e}")
    except Exception as e:
        print(f"triton BD={BD} TL={TL}: {type(e).__name__}: {str(e)[:200]}")
PY
stamp "bench bf16"
python3 bench/bench_scan.py --device cuda --dtype bfloat16 --shapes 8,1536,4096,16 --impls cuda,triton,chunked 2>&1 | tee -a "$OUT/bench.log"
stamp "done"
