#!/usr/bin/env bash
# GPU checks and benchmark of medseg_tutor.ssm (selective scan + Mamba block) against mamba-ssm's CUDA kernel.
# Run from the repo root on the device, carrying the git-ignored folder .whl/ (device tool: carry=[".whl"]):
#   .whl/mamba_ssm-2.3.2.post1.tar.gz   sdist (here: MAMBA_SKIP_CUDA_BUILD=TRUE pip download --no-deps --no-binary :all:
#                                        --no-build-isolation mamba-ssm==2.3.2.post1 -d .whl)
#   .whl/prebuilt/mamba_ssm-*.whl.partNN optional: the wheel a previous run built (it writes the parts to
#                                        $OUT/prebuilt); if present it is installed instead of building (saves ~2.5 min)
#   bash scripts/device/scan.sh [--no-tests] [bench_scan.py arguments]   # logs under $OUT (default /tmp/out)
# Time: the whole script stays within SCAN_BUDGET seconds (default 285): pytest gets at most 150 s, the benchmark the
# rest (it prints each table as it goes, the two shapes of issue 17's first rows first, fp32 and bf16 side by side).
# While the tests run, a throw-away pass of the benchmark (our kernels only, 1 rep) compiles every kernel the
# benchmark needs into Triton's disk cache, so that the timed pass only autotunes and times.
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
TESTS=1; [ "${1:-}" = "--no-tests" ] && { TESTS=0; shift; }
T0=$(date +%s); BUDGET=${SCAN_BUDGET:-285}
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
python3 -c 'import torch, selective_scan_cuda, mamba_ssm; print("mamba_ssm", mamba_ssm.__version__)' || echo "mamba-ssm NOT importable"

# 2. correctness on the GPU: every test (GPU-marked ones included), 4 processes (Triton compiles in parallel)
if [ "$TESTS" = 1 ]; then
  ( timeout 200 python3 bench/bench_scan.py --device cuda "$@" --impls triton --reps 1 > "$OUT/warm.log" 2>&1 ) &
  WARM=$!
  stamp "pytest (and compiling the benchmark's kernels in the background)"
  timeout 150 python3 -m pytest -q -n 4 -rfEs tests/test_scan.py tests/test_mamba.py > "$OUT/pytest.log" 2>&1 || echo "pytest exit $?" 
  grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/pytest.log" | tail -25
  stamp "cross-check against mamba-ssm (its ref and its kernel)"
  timeout 40 python3 bench/check_scan_gpu.py 2>&1 | tee "$OUT/check.log"
  wait $WARM; stamp "warm-up pass done: $(grep -c '^| triton' "$OUT/warm.log") Triton rows"
fi

# 3. benchmark: every shape of issue 17, fp32 and bf16, then the Mamba block, in one process
LEFT=$(( BUDGET - ($(date +%s) - T0) )); stamp "bench_scan (${LEFT} s left)"
timeout $(( LEFT > 30 ? LEFT : 30 )) python3 bench/bench_scan.py --device cuda "$@" 2>&1 | tee "$OUT/bench.log"
stamp "done"
