#!/usr/bin/env bash
# Build and install mamba-ssm (and optionally causal-conv1d) from their sdists for ONE GPU architecture.
# mamba-ssm ships source only; its setup.py compiles for ~8 architectures (slow). We patch the -gencode
# list down to the one card we have, then `pip wheel` without build isolation (uses the torch installed here).
#
#   scripts/build_mamba_ssm.sh SDIST [ARCH] [CAUSAL_SDIST]
#     SDIST         path to mamba_ssm-X.tar.gz   (get it with: pip download --no-deps --no-binary :all:
#                   --no-build-isolation mamba-ssm==2.3.2.post1 -d .whl  ; needs MAMBA_SKIP_CUDA_BUILD=TRUE here)
#     ARCH          compute capability without the dot, default: read from the GPU (90 on H100/H200)
#     CAUSAL_SDIST  optional path to causal_conv1d-X.tar.gz, built the same way
# Environment: MAX_JOBS (default 16), WHEEL_DIR (default /tmp/mamba_wheels), PIP_TARGET (optional --target dir).
set -euo pipefail
SDIST=${1:?usage: build_mamba_ssm.sh SDIST [ARCH] [CAUSAL_SDIST]}
ARCH=${2:-$(python3 -c 'import torch; m,n=torch.cuda.get_device_capability(); print(f"{m}{n}")')}
CAUSAL=${3:-}
WHEEL_DIR=${WHEEL_DIR:-/tmp/mamba_wheels}
export MAX_JOBS=${MAX_JOBS:-16} MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE
export TORCH_CUDA_ARCH_LIST="${ARCH:0:-1}.${ARCH: -1}"
mkdir -p "$WHEEL_DIR"

patch_and_build() {   # $1 sdist
  local src; src=$(mktemp -d)
  tar xzf "$1" -C "$src"
  local dir; dir=$(ls -d "$src"/*/)
  # replace every `-gencode arch=...` pair that setup.py appends by our single architecture
  python3 - "$dir/setup.py" "$ARCH" <<'PY'
import sys
path, arch = sys.argv[1], sys.argv[2]
s = open(path).read()
anchor = '    # HACK: The compiler flag'
assert anchor in s, f"{path}: layout changed, patch the -gencode list by hand"
s = s.replace(anchor, f'    cc_flag = ["-gencode", "arch=compute_{arch},code=sm_{arch}"]  # patched: one arch only\n' + anchor, 1)
open(path, 'w').write(s)
print(f"patched {path}: build only sm_{arch}")
PY
  ( cd "$dir" && python3 -m pip wheel --no-build-isolation --no-deps -w "$WHEEL_DIR" . )
}

t0=$(date +%s)
patch_and_build "$SDIST"
[ -n "$CAUSAL" ] && patch_and_build "$CAUSAL"
python3 -m pip install --no-deps --no-index ${PIP_TARGET:+--target "$PIP_TARGET"} "$WHEEL_DIR"/*.whl
echo "built + installed in $(( $(date +%s) - t0 )) s: $(ls "$WHEEL_DIR")"
python3 -c 'import torch, selective_scan_cuda, mamba_ssm; print("mamba_ssm", mamba_ssm.__version__, "OK")'
