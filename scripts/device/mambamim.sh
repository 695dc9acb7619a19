#!/usr/bin/env bash
# MambaMIM on the GPU: (1) a full-size pre-training step (HyMamba base, 96³, four crops) with each selective-scan
# implementation (mamba-ssm's kernel if installed, our Triton kernel, our chunked PyTorch scan), ours vs the released
# semantics (loop S6T + B1 layout, batch-wide token drop, dead 96³ path): step time and peak memory; (2) S6T bench on
# the GPU; (3) a few hundred pre-training steps on real 3D volumes (AdrenalMNIST3D, upsampled 64³ → 96³) showing the loss
# fall, with input / masked input / reconstruction figures.
# Needs .devcache/adrenal64.npz (python tools/make_devcache_mim.py; carry .devcache). mamba-ssm: installed from the
# prebuilt wheel in .whl/prebuilt if present (see scripts/device/scan.sh), never built here.
# Run from the repo root:  bash scripts/device/mambamim.sh   (logs + figures under $OUT; < 7 minutes on one H100)
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
python3 - <<'PY' 2>&1 | tee "$OUT/step.log"
import os, time, json, torch
from medseg_tutor.core import seed_everything
from medseg_tutor.ssm.scan import cuda_kernel_available
from medseg_tutor.nets.hymamba import hymamba_base
from medseg_tutor.mim.pretrain import MambaMIM, make_optimizer, pretrain_step
torch.backends.cudnn.benchmark = True
dev = 'cuda'; rows = []
x = torch.rand(4, 1, 96, 96, 96, device=dev)                      # one volume -> four 96³ crops (released default)
impls = (['cuda'] if cuda_kernel_available() else []) + ['triton', 'chunked']
for impl in impls:
    for released in (False, True):
        seed_everything(0)
        try:
            model = MambaMIM(hymamba_base(mamba_impl=impl), released=released).to(dev)
            opt = make_optimizer(model, 1e-4)
            for i in range(3): pretrain_step(model, opt, x, i, 100, 10)
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); t0 = time.perf_counter()
            for i in range(10): pretrain_step(model, opt, x, 3 + i, 100, 10)
            torch.cuda.synchronize()
            ms, mem = (time.perf_counter() - t0) / 10 * 1e3, torch.cuda.max_memory_allocated() / 2**30
            rows.append(dict(impl=impl, model='released semantics' if released else 'ours', ms=ms, gib=mem,
                             params=sum(p.numel() for p in model.parameters())))
        except Exception as e:
            rows.append(dict(impl=impl, model='released semantics' if released else 'ours', error=repr(e)[:200]))
        print(rows[-1]); model = opt = None; torch.cuda.empty_cache()
json.dump(rows, open(os.path.join(os.environ['OUT'], 'step.json'), 'w'), indent=1)
PY

stamp "2. S6T bench on the GPU (batch 16, C 384, 6³)"
python3 bench/bench_s6t.py --device cuda --reps 20 --ref-reps 2 2>&1 | tee "$OUT/bench_s6t.log"

stamp "3. pre-training on AdrenalMNIST3D volumes (64³ -> 96³), HyMamba base, four crops per step"
python3 - <<'PY' 2>&1 | tee "$OUT/train.log"
import os, time, json, math, numpy as np, torch, torch.nn.functional as F
import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
from medseg_tutor.core import seed_everything
from medseg_tutor.nets.hymamba import hymamba_base
from medseg_tutor.mim.masking import hybrid_mask
from medseg_tutor.mim.pretrain import MambaMIM, make_optimizer, pretrain_step, paste_reconstruction
torch.backends.cudnn.benchmark = True
OUT, dev = os.environ['OUT'], 'cuda'
d = np.load('.devcache/adrenal64.npz')
vols = torch.from_numpy(np.unpackbits(d['bits'], axis=1).reshape(-1, 64, 64, 64)).to(dev)
train, val = vols[torch.from_numpy(d['split'] == 0).to(dev)], vols[torch.from_numpy(d['split'] == 1).to(dev)]
def prep(v, gen=None, flip=True):                                  # (n, 64³) uint8 -> (n, 1, 96³) float in [0, 1]
    x = F.interpolate(v[:, None].float(), size=(96, 96, 96), mode='trilinear', align_corners=False)
    if flip:
        for ax, p in ((2, .2), (3, .2), (4, .1)):                  # released flips: axis 0/1/2 with p .2/.2/.1
            m = torch.rand(len(x), device=dev, generator=gen) < p
            x = torch.where(m.view(-1, 1, 1, 1, 1), x.flip(ax), x)
    return x
gen = seed_everything(0); g = torch.Generator(dev).manual_seed(0)
model = MambaMIM(hymamba_base()).to(dev)
steps, warm, lr, budget = 400, 40, 3e-4, 210.                       # lr raised from 1e-4 for a short run
opt = make_optimizer(model, lr)
xv = prep(val[:8], flip=False); vv = hybrid_mask(8, 6, generator=torch.Generator().manual_seed(1), device=dev)
def val_loss():
    model.eval()
    with torch.no_grad(): l = float(model(xv, vv)[0])
    model.train(); return l
log, t0 = [], time.time()
log.append(dict(step=0, val=val_loss()))
for it in range(steps):
    idx = torch.randint(0, len(train), (4,), device=dev, generator=g)
    r = pretrain_step(model, opt, prep(train[idx], g), it, steps, warm, base_lr=lr)
    if it % 10 == 0 or it == steps - 1: log.append(dict(step=it, loss=r['loss'], lr=r['lr'], wd=r['wd'], grad_norm=r['grad_norm']))
    if (it + 1) % 50 == 0: log.append(dict(step=it + 1, val=val_loss())); print(log[-2], log[-1], f'{time.time() - t0:.0f} s')
    if time.time() - t0 > budget: print(f'time budget reached after {it + 1} steps'); break
done = it + 1
log.append(dict(step=done, val=val_loss()))
json.dump(log, open(os.path.join(OUT, 'train.json'), 'w'), indent=1)
tr = [(e['step'], e['loss']) for e in log if 'loss' in e]; va = [(e['step'], e['val']) for e in log if 'val' in e]
model.eval()
with torch.no_grad():
    loss, out = model(xv[:3], vv[:3]); pasted = paste_reconstruction(xv[:3], out['pred'], out['mask'])
fig, ax = plt.subplots(1, 1, figsize=(6, 3.5)); ax.plot(*zip(*tr), label='train (4 crops)'); ax.plot(*zip(*va), 'o-', label='val (8, fixed mask)')
ax.set_xlabel('step'); ax.set_ylabel('masked-patch loss'); ax.legend(); fig.tight_layout(); fig.savefig(os.path.join(OUT, 'loss.png'), dpi=120)
fig, axs = plt.subplots(3, 3, figsize=(9, 9))
for r in range(3):
    z = int(xv[r, 0].sum((0, 1)).argmax())
    for c, (img, t) in enumerate(((xv, 'input'), (out['masked_input'], 'masked input'), (pasted, 'reconstruction (masked cubes)'))):
        axs[r, c].imshow(img[r, 0, :, :, z].float().cpu(), cmap='gray', vmin=0, vmax=1); axs[r, c].set_title(t); axs[r, c].axis('off')
fig.tight_layout(); fig.savefig(os.path.join(OUT, 'reconstruction.png'), dpi=100)
print(f"SUMMARY steps={done} time={time.time() - t0:.0f}s train_loss first10={np.mean([l for _, l in tr[:2]]):.4f} "
      f"last10={np.mean([l for _, l in tr[-2:]]):.4f} val {va[0][1]:.4f} -> {va[-1][1]:.4f}")
PY

stamp "summary"
python3 - <<'PY'
import json, os
rows = json.load(open(os.path.join(os.environ['OUT'], 'step.json')))
print("| scan impl | model | step (ms) | peak mem (GiB) | params |"); print("|---|---|---|---|---|")
for r in rows:
    print(f"| {r['impl']} | {r['model']} | " + (f"{r['ms']:.0f} | {r['gib']:.2f} | {r['params']:,} |" if 'ms' in r else f"error: {r['error']} | | |"))
PY
grep "^|" "$OUT/bench_s6t.log"; grep SUMMARY "$OUT/train.log"
stamp "done"
