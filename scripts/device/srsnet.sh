#!/usr/bin/env bash
# SRSNet on the device: phase 1 (R reconstructs), phase 2 (frozen R guides S's DPConv), and the ablation
# "S with vs without DPConv" (same seed, same init of every shared weight, same batches, same steps),
# on BUSI (official split 1: train_idx_1 / val_idx_1) and SIRST (idx_427: train+val / test).
# Data: .devcache/{busi256,sirst256}.npz from tools/make_devcache.py (images uint8 (N,1,256,256), bit-packed masks);
# a missing cache is replaced by a synthetic set (bright blobs on noise) and the table says so.
# Run from the repo root:  bash scripts/device/srsnet.sh      (logs, curves and table under $OUT; < 6 minutes on one H100)
# Knobs (env): SRS_SIZE (128), SRS_BS (8), SRS_STEPS1 (600), SRS_STEPS2 (1500), SRS_SEC1 (25), SRS_SEC2 (95) seconds
# per dataset (the step counts are capped so each phase fits its time; both arms always get the same steps),
# SRS_SETS (busi,sirst), SRS_DPCONV_IMPL (grouped|affine), SRS_OFFICIAL_BN (0; 1 = R's BatchNorm in train mode in phase 2, as released).
set -euo pipefail
OUT=${OUT:-runs/srsnet_device}; mkdir -p "$OUT"
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - "$OUT" <<'PYEOF' 2>&1 | tee "$OUT/srsnet.log"
import os, sys, time, json
import numpy as np, torch, torch.nn.functional as F
from medseg_tutor.core import seed_everything, get_device
from medseg_tutor.nets.srsnet import SRSReconstructionNet, SRSSegmentationNet, SRSNet
from medseg_tutor.train.srsnet import phase_params, phase_step, sgd, poly_lr, augment, seg_scores

out = sys.argv[1]
E = lambda k, d: type(d)(os.environ.get(k, d))
SIZE, BS, STEPS1, STEPS2 = E('SRS_SIZE', 128), E('SRS_BS', 8), E('SRS_STEPS1', 600), E('SRS_STEPS2', 1500)
SEC1, SEC2, SEED, OFFICIAL = E('SRS_SEC1', 25.0), E('SRS_SEC2', 95.0), 41, bool(E('SRS_OFFICIAL_BN', 0))
SETS = os.environ.get('SRS_SETS', 'busi,sirst').split(',')
IMPL = os.environ.get('SRS_DPCONV_IMPL', 'grouped')
dev = get_device()
torch.backends.cudnn.benchmark = True
torch.backends.cuda.matmul.allow_tf32 = True; torch.backends.cudnn.allow_tf32 = True
print(f"device {dev} {torch.cuda.get_device_name() if dev.type == 'cuda' else ''} torch {torch.__version__} "
      f"size {SIZE} batch {BS} steps1<={STEPS1} ({SEC1}s) steps2<={STEPS2} ({SEC2}s) official_bn={OFFICIAL} dpconv={IMPL}", flush=True)
MEAN, STD = 0.449, 0.226                                          # grey ImageNet statistics, normalised once

def load(name):
    "(x_train, y_train, x_eval, y_eval, source) as float tensors at SIZE on `dev`."
    path = f'.devcache/{name}256.npz'
    if os.path.isfile(path):
        z = np.load(path); ims = torch.from_numpy(z['images']); n, _, h, w = ims.shape
        ms = torch.from_numpy(np.unpackbits(z['masks'], axis=-1)[..., :h * w].reshape(n, 1, h, w).copy())
        tr, ev = (z['train_idx_1'], z['val_idx_1']) if name == 'busi' else (np.concatenate([z['train_idx'], z['val_idx']]), z['test_idx'])
        src = f'{path} ({len(tr)} train / {len(ev)} eval)'
    else:                                                         # synthetic stand-in: 1-3 bright discs on smooth noise
        g = torch.Generator().manual_seed(0); n = 160; h = w = 256
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
        ms = torch.zeros(n, 1, h, w, dtype=torch.uint8); ims = torch.zeros(n, 1, h, w)
        for i in range(n):
            for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
                cy, cx = torch.randint(20, h - 20, (2,), generator=g).tolist(); r = float(torch.randint(4, 20, (1,), generator=g))
                ms[i, 0] |= (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).to(torch.uint8)
        noise = F.avg_pool2d(torch.rand(n, 1, h, w, generator=g), 9, 1, 4)
        ims = ((0.35 + 0.8 * (noise - 0.5) + 0.35 * ms.float()).clamp(0, 1) * 255).to(torch.uint8)
        tr, ev = np.arange(0, 120), np.arange(120, n); src = f'SYNTHETIC ({path} missing)'
    x = F.interpolate(ims.float() / 255, size=(SIZE, SIZE), mode='area')
    # BUSI lesions are large: area-resize then > 0.5. SIRST targets are a few pixels: max-pool so none vanishes.
    y = (F.interpolate(ms.float(), size=(SIZE, SIZE), mode='area') > (0.5 if name == 'busi' else 0)).float()
    x = ((x - MEAN) / STD).expand(-1, 3, -1, -1).contiguous()
    t, e = torch.as_tensor(tr), torch.as_tensor(ev)
    return x[t].to(dev), y[t].to(dev), x[e].to(dev), y[e].to(dev), src

def sync():
    if dev.type == 'cuda': torch.cuda.synchronize()

def run_phase(models, xs, ys, phase, steps, seconds):
    "Interleaved training of several models on identical batches; steps capped at step 30 (timed over 10..30) to fit `seconds`."
    g = torch.Generator().manual_seed(SEED)
    opts = [sgd(phase_params(m, phase), 0.01) for m in models]
    losses = [[] for _ in models]; total = steps; sync(); t0 = time.time(); it = 0
    while it < total:
        idx = torch.randint(0, len(xs), (BS,), generator=g).to(dev)
        xb, yb = augment(xs[idx], None if ys is None else ys[idx], g)
        for m, o, l in zip(models, opts, losses):
            l.append(phase_step(m, o, xb, yb, phase)); poly_lr(o, 0.01, it + 1, total)
        it += 1
        if it == 10: sync(); t10 = time.time()
        if it == 30 and total > 30:
            sync(); now = time.time(); per = (now - t10) / 20
            total = min(steps, 30 + max(0, int((seconds - (now - t0)) / per)))
    sync()
    return losses, total, time.time() - t0

@torch.no_grad()
def scores(net, x, y):
    net.eval()
    logits = torch.cat([net(x[i:i + 16]) for i in range(0, len(x), 16)])
    per = [seg_scores(logits[i:i + 1], y[i:i + 1]) for i in range(len(x))]   # per image, then averaged
    p, t = (logits > 0).float(), y
    pooled = ((p * t).sum() / ((p + t).clamp(max=1).sum()).clamp_min(1)).item()   # one IoU over all eval pixels
    return {**{k: float(np.mean([q[k] for q in per])) for k in ('IoU', 'F1')}, 'IoU_pooled': pooled}

# --- DPConv micro-benchmark at SRS's configuration: B=8, (256, 256, 3, 64) on a 32x32 map (a 256x256 image) ---
from medseg_tutor.core import benchmark
from medseg_tutor.blocks.dpconv import DPConv, dpconv_ref
torch.manual_seed(0)
dps = {i: DPConv(256, 256, 3, 64, impl=i).to(dev) for i in ('grouped', 'affine')}
dps['affine'].load_state_dict(dps['grouped'].state_dict())
xb, ib = torch.randn(8, 256, 32, 32, device=dev), torch.randn(8, 64, 32, 32, device=dev)
sd = dps['grouped'].released_state_dict()
with torch.no_grad():
    yr = dpconv_ref(xb, ib, sd, 256, 3)
    for i, m in dps.items():
        err = ((m(xb, ib) - yr).abs().max() / yr.abs().max()).item(); assert err < 1e-2, (i, err)   # TF32 convs on GPU
print("DPConv (256,256,3,64), B=8, 32x32, fp32/TF32: median ms  [forward | forward+backward]", flush=True)
def fb(fn):
    xx, ii = xb.clone().requires_grad_(), ib.clone().requires_grad_()
    return lambda: fn(xx, ii).sum().backward()
bench_rows = [('ref (loop over samples)', lambda a, b: dpconv_ref(a, b, sd, 256, 3))] + [(i, m) for i, m in dps.items()]
for name, fn in bench_rows:
    with torch.no_grad(): f = benchmark(lambda: fn(xb, ib), 3, 20)['median_ms']
    bw = benchmark(fb(fn), 3, 20)['median_ms'] if name != 'ref (loop over samples)' else float('nan')
    print(f"  {name:24s} {f:8.3f} | {bw:8.3f}", flush=True)
del dps, xb, ib, yr

rows, curves = [], {}
t_all = time.time()
for name in SETS:
    xt, yt, xe, ye, src = load(name)
    print(f"\n== {name}: {src}; train {tuple(xt.shape)}, eval {tuple(xe.shape)}", flush=True)
    seed_everything(SEED); R = SRSReconstructionNet().to(dev)
    (l1,), n1, s1 = run_phase([R], xt, None, 1, STEPS1, SEC1)
    with torch.no_grad():
        R.eval(); mse_eval = float(np.mean([F.mse_loss(R(xe[i:i + 16]), xe[i:i + 16]).item() for i in range(0, len(xe), 16)]))
    print(f"phase 1: {n1} steps in {s1:.0f}s ({1000 * s1 / n1:.0f} ms/step), train MSE {np.mean(l1[:10]):.4f} -> {np.mean(l1[-20:]):.4f}, eval MSE {mse_eval:.4f}", flush=True)
    seed_everything(SEED); S_dp = SRSSegmentationNet(dpconv_impl=IMPL).to(dev)
    seed_everything(SEED); S_no = SRSSegmentationNet(use_dpconv=False).to(dev)     # identical init of all shared weights
    assert all(torch.equal(a, b) for (k, a) in S_no.state_dict().items() for b in [S_dp.state_dict()[k]])
    net_dp, net_no = SRSNet(R, S_dp, official_bn_train=OFFICIAL), SRSNet(R, S_no, official_bn_train=OFFICIAL)
    r_before = {k: v.clone() for k, v in R.state_dict().items()}
    (l_dp, l_no), n2, s2 = run_phase([net_dp, net_no], xt, yt, 2, STEPS2, SEC2)
    r_changed = [k for k, v in R.state_dict().items() if not torch.equal(v, r_before[k])]
    w_changed = [k for k in r_changed if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))]
    assert not w_changed, f"R's weights moved in phase 2: {w_changed[:5]}"
    if not OFFICIAL: assert not r_changed, f"R's BN statistics moved in phase 2 (eval-mode BN expected): {r_changed[:5]}"
    print(f"phase 2: {n2} steps per arm in {s2:.0f}s; R weights unchanged: yes; R BN stats changed: {len(r_changed)} tensors", flush=True)
    for arm, net, l in (('S + DPConv (SRS)', net_dp, l_dp), ('S without DPConv', net_no, l_no)):
        sc = scores(net, xe, ye)
        rows.append((name + (' (synthetic)' if 'SYNTH' in src else ''), arm, n1, n2, np.mean(l[-20:]), sc['IoU'], sc['F1'], sc['IoU_pooled']))
        print(f"  {arm:18s} last loss {np.mean(l[-20:]):.4f}  IoU {sc['IoU']:.4f}  F1 {sc['F1']:.4f}  pooled IoU {sc['IoU_pooled']:.4f}", flush=True)
    curves[name] = dict(phase1=l1, phase2_dpconv=l_dp, phase2_plain=l_no)
    if dev.type == 'cuda': print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)

json.dump(curves, open(os.path.join(out, 'srsnet_curves.json'), 'w'))
try:
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, 2 * len(curves), figsize=(5 * 2 * len(curves), 3.5), squeeze=False); axs = axs[0]
    sm = lambda v: np.convolve(v, np.ones(20) / 20, mode='valid') if len(v) > 40 else v
    for i, (name, c) in enumerate(curves.items()):
        axs[2 * i].plot(sm(c['phase1'])); axs[2 * i].set_title(f'{name}: phase 1 MSE (R)'); axs[2 * i].set_yscale('log')
        axs[2 * i + 1].plot(sm(c['phase2_dpconv']), label='S + DPConv'); axs[2 * i + 1].plot(sm(c['phase2_plain']), label='S without DPConv')
        axs[2 * i + 1].set_title(f'{name}: phase 2, 0.5 BCE + Dice'); axs[2 * i + 1].legend()
    plt.tight_layout(); plt.savefig(os.path.join(out, 'srsnet_curves.png'), dpi=100)
except Exception as e: print('no plot:', e)

print(f"\nSRSNet ablation at {SIZE}x{SIZE}, batch {BS}, seed {SEED}, R BN {'train (official)' if OFFICIAL else 'eval'}; total {time.time() - t_all:.0f}s")
print("IoU, F1: per-image, averaged over the eval images; pooled IoU: one IoU over all eval pixels; loss: mean of the last 20 steps")
print(f"| {'data':20s} | {'model':18s} | {'steps R':>7s} | {'steps S':>7s} | {'loss':>6s} | {'IoU':>6s} | {'F1':>6s} | {'pooled IoU':>10s} |")
print(f"|{'-'*22}|{'-'*20}|{'-'*9}|{'-'*9}|{'-'*8}|{'-'*8}|{'-'*8}|{'-'*12}|")
for r in rows: print(f"| {r[0]:20s} | {r[1]:18s} | {r[2]:7d} | {r[3]:7d} | {r[4]:6.4f} | {r[5]:6.4f} | {r[6]:6.4f} | {r[7]:10.4f} |")
PYEOF
