#!/usr/bin/env python
"""MobileUtr training and inference throughput, side by side in one process.

Training (images/s, one SGD step = forward + BCE-Dice loss + backward + SGD(momentum, wd) step) at 256 x 256, batch 8
and 32, and inference (images/s, eval + inference_mode) at batch 1 and 32, for these configurations:

  released    the released computation (explicit softmax attention, AvgPool sampler, ConvTranspose2d, LayerNorm on every
              token, x + x*(sigmoid-1/2) gates; `set_fast_path(model, False)`), fp32, NCHW
              (`mobileutr(channels_last=False)`), eager
  fp32        our fast path (SDPA, sampling before the LayerNorm, broadcast local propagation), fp32, NCHW, eager
  bf16        + bf16 autocast
  bf16+cl     + channels_last (model and input; `mobileutr()`'s default)
  fp32+cl     fp32 with channels_last (to separate the two effects)
  bf16+cl+compile      + torch.compile (default mode)
  bf16+cl+compile+cg   + torch.compile(mode='reduce-overhead'): CUDA graphs, for the launch-bound small batches
  fp32+compile         torch.compile alone
  bf16+cl+fold(+compile+cg)   inference only: `fold_batchnorm(model)` (eval-mode BNs folded into the adjacent convs)

Every configuration starts from the same weights. The same maths runs in all of them (bf16 rounds differently).
cuDNN benchmark mode is on for all; TF32 keeps PyTorch's defaults (cuDNN convs: on, matmuls: off) unless --tf32.
Compiled rows run last, in priority order, and are skipped when --budget seconds would be exceeded.

  python bench/bench_mobileutr.py                 # GPU, full table
  python bench/bench_mobileutr.py --tiny          # CPU smoke run: 64 x 64, batch 2, few reps, no compile (seconds)
"""
from __future__ import annotations
import argparse, copy, json, os, sys, time
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from medseg_tutor.nets.mobileutr import mobileutr, mobileutr_l, fold_batchnorm
from medseg_tutor.blocks.lgl import set_fast_path

CONFIGS = {  # name: (fast path, bf16 autocast, channels_last, compile mode or None)
    'released': (False, False, False, None),
    'fp32': (True, False, False, None),
    'bf16': (True, True, False, None),
    'fp32+cl': (True, False, True, None),
    'bf16+cl': (True, True, True, None),
    'bf16+cl+fold': (True, True, True, None),                   # inference only: BatchNorms folded into the convs
    'bf16+cl+compile+cg': (True, True, True, 'reduce-overhead'),   # compiled rows run in this order (priority)
    'bf16+cl+compile': (True, True, True, 'default'),
    'bf16+cl+fold+compile+cg': (True, True, True, 'reduce-overhead'),   # inference only
    'fp32+compile': (True, False, False, 'default'),
}
INFER_ONLY = {'bf16+cl+fold', 'bf16+cl+fold+compile+cg'}

def bce_dice(logits, target, smooth=1e-5):
    "The released BCEDiceLoss: 0.5 * BCE-with-logits + (1 - mean over samples of soft Dice)."
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p, t = torch.sigmoid(logits).flatten(1), target.flatten(1)
    dice = (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return 0.5 * bce + 1 - dice.mean()

def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()

def make_model(base_sd, variant, fast, cl, dev):
    m = (mobileutr if variant == 'base' else mobileutr_l)(channels_last=cl)   # NCHW rows: weights and input NCHW
    m.load_state_dict(base_sd)
    set_fast_path(m, fast)
    m = m.to(dev)
    return m.to(memory_format=torch.channels_last) if cl else m

def sgd(params, dev):
    kw = dict(lr=0.01, momentum=0.9, weight_decay=1e-4)
    if dev.type == 'cuda':
        try: return torch.optim.SGD(params, fused=True, **kw)
        except (TypeError, RuntimeError): pass
    return torch.optim.SGD(params, **kw)

_STATE = {}   # (config, 'train' | 'infer') -> (model, optimizer, function): a compiled function is reused across batch sizes

def _setup(name, kind, a, base_sd, dev):
    if (name, kind) in _STATE: return _STATE[name, kind]
    fast, bf16, cl, mode = CONFIGS[name]
    torch.manual_seed(0)
    m = make_model(base_sd, a.variant, fast, cl, dev).train(kind == 'train')
    if 'fold' in name: m = fold_batchnorm(m)
    opt = sgd(m.parameters(), dev) if kind == 'train' else None
    def fwd_loss(x, y):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16): return bce_dice(m(x), y)
    def fwd(x):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16): return m(x)
    f = fwd_loss if kind == 'train' else fwd
    # the batch dimension is marked dynamic (batch 8 and 32 share one compiled graph); size 1 is always specialised
    if mode and a.compile_backend != 'inductor': f = torch.compile(f, backend=a.compile_backend)   # smoke-testing the path
    elif mode: f = torch.compile(f, mode=None if mode == 'default' else mode)
    _STATE[name, kind] = (m, opt, f)
    return m, opt, f

def _inputs(bs, a, cl, dev, mode):
    x = torch.randn(bs, 3, a.size, a.size, device=dev)
    y = (torch.rand(bs, 1, a.size, a.size, device=dev) > 0.7).float()
    if cl: x = x.contiguous(memory_format=torch.channels_last)
    if mode and bs > 1: torch._dynamo.mark_dynamic(x, 0); torch._dynamo.mark_dynamic(y, 0)
    return x, y

def run_train(name, cfg, bs, a, base_sd, dev):
    fast, bf16, cl, mode = cfg
    m, opt, f = _setup(name, 'train', a, base_sd, dev)
    x, y = _inputs(bs, a, cl, dev, mode)
    def step():
        if mode == 'reduce-overhead' and dev.type == 'cuda': torch.compiler.cudagraph_mark_step_begin()
        loss = f(x, y)
        loss.backward()
        opt.step(); opt.zero_grad(set_to_none=True)
        return loss
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter(); step(); sync(dev); first = time.perf_counter() - t0
    for _ in range(a.warmup): step()
    sync(dev); t0 = time.perf_counter()
    for _ in range(a.reps): loss = step()
    sync(dev); dt = time.perf_counter() - t0
    ok = bool(torch.isfinite(loss.detach()).item())
    mem = torch.cuda.max_memory_allocated() / 2**30 if dev.type == 'cuda' else float('nan')
    return dict(ips=bs * a.reps / dt, ms=dt / a.reps * 1e3, first_s=first, mem_gib=mem, finite=ok)

def run_infer(name, cfg, bs, a, base_sd, dev):
    fast, bf16, cl, mode = cfg
    m, _, f = _setup(name, 'infer', a, base_sd, dev)
    x, _ = _inputs(bs, a, cl, dev, mode)
    with torch.inference_mode():
        t0 = time.perf_counter(); f(x); sync(dev); first = time.perf_counter() - t0
        for _ in range(a.warmup): f(x)
        sync(dev); t0 = time.perf_counter()
        for _ in range(a.reps): f(x)
        sync(dev); dt = time.perf_counter() - t0
    return dict(ips=bs * a.reps / dt, ms=dt / a.reps * 1e3, first_s=first)

def profile(name, cfg, bs, a, base_sd, dev, top=12):
    "Top kernels of a few training steps (eager configs only)."
    from torch.profiler import profile as prof, ProfilerActivity
    fast, bf16, cl, _ = cfg
    m = make_model(base_sd, a.variant, fast, cl, dev).train(); opt = sgd(m.parameters(), dev)
    x = torch.randn(bs, 3, a.size, a.size, device=dev); y = (torch.rand_like(x[:, :1]) > 0.7).float()
    if cl: x = x.to(memory_format=torch.channels_last)
    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16): loss = bce_dice(m(x), y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(3): step()
    sync(dev)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == 'cuda' else [])
    with prof(activities=acts) as p:
        for _ in range(3): step()
        sync(dev)
    key = 'self_cuda_time_total' if dev.type == 'cuda' else 'self_cpu_time_total'
    try: key_ok = p.key_averages().table(sort_by=key, row_limit=top)
    except Exception: key_ok = p.key_averages().table(sort_by='self_device_time_total', row_limit=top)
    print(f'\n## profile: {name}, batch {bs} (3 training steps)\n{key_ok}', flush=True)

def parity_data(size, dev, n_train=256, n_val=64, seed=0):
    "BUSI split 1 from .devcache/busi256.npz (tools/make_devcache.py) if present, else synthetic dark blobs on speckle."
    path = os.path.join('.devcache', 'busi256.npz')
    if os.path.isfile(path):
        import numpy as np
        z = np.load(path); ims = torch.from_numpy(z['images']); n, _, h, w = ims.shape
        ms = torch.from_numpy(np.unpackbits(z['masks'], axis=-1)[..., :h * w].reshape(n, 1, h, w).copy())
        tr, va = torch.from_numpy(z['train_idx_1'][:n_train]), torch.from_numpy(z['val_idx_1'][:n_val])
        x, y = ims.float() / 255, ms.float()
        if h != size: x, y = F.interpolate(x, size, mode='bilinear'), (F.interpolate(y, size, mode='bilinear') > 0.5).float()
        src = f'BUSI split 1 ({len(tr)} train / {len(va)} val images)'
    else:
        g = torch.Generator().manual_seed(seed); n = n_train + n_val
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
        c = torch.rand(n, 2, generator=g) * size * 0.6 + size * 0.2; r = torch.rand(n, 2, generator=g) * size * 0.15 + size * 0.05
        y = ((((yy - c[:, 0, None, None]) / r[:, 0, None, None]) ** 2 + ((xx - c[:, 1, None, None]) / r[:, 1, None, None]) ** 2) <= 1).float()[:, None]
        x = (0.6 - 0.4 * y) * (1 + 0.5 * torch.randn(n, 1, size, size, generator=g)).clamp(0, 2) / 2
        tr, va = torch.arange(n_train), torch.arange(n_train, n)
        src = f'synthetic dark ellipses on speckle ({n_train} train / {n_val} val; no .devcache/busi256.npz here)'
    x = (x - 0.449) / 0.226
    return x[tr].to(dev), y[tr].to(dev), x[va].to(dev), y[va].to(dev), src

def parity(a, base_sd, dev, configs=('released', 'bf16+cl'), bs=8, every=None):
    "Train each configuration for a.parity steps from the same weights on the same batches; loss curves and val IoU."
    xt, yt, xv, yv, src = parity_data(a.size, dev)
    every = every or max(1, a.parity // 6)
    curves, ious = {}, {}
    for n in configs:
        fast, bf16, cl, _ = CONFIGS[n]
        torch.manual_seed(0)
        m = make_model(base_sd, a.variant, fast, cl, dev).train(); opt = sgd(m.parameters(), dev)
        g = torch.Generator().manual_seed(1); curve = []
        t0 = time.perf_counter()
        for it in range(a.parity):
            for pg in opt.param_groups: pg['lr'] = 0.01 * (1 - it / a.parity) ** 0.9
            idx = torch.randint(0, len(xt), (bs,), generator=g).to(dev)
            x = xt[idx]
            if cl: x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16): loss = bce_dice(m(x), yt[idx])
            loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
            if it % every == 0 or it == a.parity - 1: curve.append((it, loss.item()))
        m.eval(); inter = union = 0.
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(xv), 16):
                p = m(xv[i:i + 16]).float() > 0; t = yv[i:i + 16] > 0.5
                inter += (p & t).sum().item(); union += (p | t).sum().item()
        curves[n], ious[n] = curve, inter / max(union, 1)
        print(f'parity {n:12s} {a.parity} steps in {time.perf_counter() - t0:.1f}s, val IoU {ious[n]:.3f}', flush=True)
    print(f'\n## Same weights, same batches, {a.parity} SGD steps (batch {bs}, {a.size}x{a.size}): {src}\n')
    print('| step | ' + ' | '.join(f'loss {n}' for n in configs) + ' |'); print('|---:|' + '---:|' * len(configs))
    for k in range(len(curves[configs[0]])):
        print(f'| {curves[configs[0]][k][0]} | ' + ' | '.join(f'{curves[n][k][1]:.4f}' for n in configs) + ' |')
    print('| val IoU | ' + ' | '.join(f'{ious[n]:.3f}' for n in configs) + ' |')
    return dict(curves=curves, iou=ious, data=src)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--variant', default='base', choices=['base', 'l'])
    ap.add_argument('--size', type=int, default=256)
    ap.add_argument('--train-batches', type=int, nargs='+', default=[8, 32])
    ap.add_argument('--infer-batches', type=int, nargs='+', default=[1, 32])
    ap.add_argument('--configs', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--reps', type=int, default=30)
    ap.add_argument('--budget', type=float, default=330., help='seconds; compiled rows that would exceed it are skipped')
    ap.add_argument('--tiny', action='store_true', help='CPU smoke settings: 64 x 64, batch 2, 1 warmup, 2 reps, no compile')
    ap.add_argument('--compile-on-cpu', action='store_true')
    ap.add_argument('--compile-backend', default='inductor', help="e.g. aot_eager to smoke-test the compiled rows quickly on CPU")
    ap.add_argument('--tf32', action='store_true', help='allow TF32 matmuls too (convs use TF32 by default)')
    ap.add_argument('--profile', nargs='*', default=[], choices=[k for k, v in CONFIGS.items() if v[3] is None])
    ap.add_argument('--parity', type=int, default=0, help='also train released vs bf16+cl this many steps (loss curves, val IoU)')
    ap.add_argument('--json', default=None, help='write the results here')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    if a.tiny: a.size, a.train_batches, a.infer_batches, a.warmup, a.reps, a.parity = 64, [2], [1, 2], 1, 2, min(a.parity, 4)
    if dev.type == 'cpu': torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    torch.backends.cudnn.benchmark = True
    if a.tf32: torch.backends.cuda.matmul.allow_tf32 = True
    start = time.perf_counter()
    gpu = torch.cuda.get_device_name() if dev.type == 'cuda' else f'CPU ({torch.get_num_threads()} threads)'
    print(f'# MobileUtr ({a.variant}) throughput | {gpu} | torch {torch.__version__} | {a.size}x{a.size} | '
          f'warmup {a.warmup}, reps {a.reps} | cudnn.benchmark on, TF32 matmul {torch.backends.cuda.matmul.allow_tf32}', flush=True)
    torch.manual_seed(0)
    base_sd = (mobileutr if a.variant == 'base' else mobileutr_l)().state_dict()
    names = [n for n in CONFIGS if n in a.configs]
    eager = [n for n in names if CONFIGS[n][3] is None]
    compiled = [n for n in names if CONFIGS[n][3] is not None]   # in CONFIGS order = priority order
    if dev.type == 'cpu' and not a.compile_on_cpu: compiled = []
    res = {'train': {}, 'infer': {}}
    def do(kind, n, bs):
        fn = run_train if kind == 'train' else run_infer
        try: r = fn(n, CONFIGS[n], bs, a, base_sd, dev)
        except Exception as e:   # report and go on: one failing configuration must not hide the others
            r = dict(error=f'{type(e).__name__}: {str(e).splitlines()[0][:120]}')
        res[kind].setdefault(n, {})[bs] = r
        msg = r.get('error') or f"{r['ips']:8.1f} img/s  {r['ms']:8.2f} ms/step  first call {r['first_s']:.1f}s" + \
              (f"  peak {r['mem_gib']:.2f} GiB" if r.get('mem_gib') == r.get('mem_gib') and 'mem_gib' in r else '')
        print(f'{kind:5s} {n:20s} b={bs:<3d} {msg}  [{time.perf_counter() - start:.0f}s]', flush=True)
        if dev.type == 'cuda': torch.cuda.empty_cache()
    for n in eager:
        for bs in (a.train_batches if n not in INFER_ONLY else []): do('train', n, bs)
        for bs in a.infer_batches: do('infer', n, bs)
        _STATE.clear()
    if a.parity: res['parity'] = parity(a, base_sd, dev)
    est = 0.
    for n in compiled:
        jobs = [('train', bs) for bs in a.train_batches] + [('infer', bs) for bs in a.infer_batches]
        if n == 'bf16+cl+compile+cg': jobs = [('train', bs) for bs in a.train_batches] + [('infer', min(a.infer_batches))]
        if n == 'bf16+cl+compile': jobs = [('train', bs) for bs in a.train_batches] + [('infer', max(a.infer_batches))]
        if n == 'fp32+compile': jobs = [('train', max(a.train_batches))]
        if n in INFER_ONLY: jobs = [('infer', bs) for bs in a.infer_batches]
        for kind, bs in jobs:
            left = a.budget - (time.perf_counter() - start)
            if left < max(est, 20.):
                print(f'{kind:5s} {n:20s} b={bs:<3d} skipped: {left:.0f}s of the budget left (a compile took {est:.0f}s)', flush=True)
                res[kind].setdefault(n, {})[bs] = dict(error='skipped (time budget)')
                continue
            t0 = time.perf_counter(); do(kind, n, bs); est = max(est, min(time.perf_counter() - t0, res[kind][n][bs].get('first_s', 1e9)))
        _STATE.clear(); torch._dynamo.reset()   # each compiled configuration starts from its own compilation
    for n in a.profile: profile(n, CONFIGS[n], min(a.train_batches), a, base_sd, dev)

    # the side-by-side tables
    base = res['train'].get('released', {})
    def cell(r, ref=None):
        if not r or 'error' in r: return (r or {}).get('error', '-')[:28]
        s = f"{r['ips']:.0f}"
        return s + (f" ({r['ips'] / ref['ips']:.2f}x)" if ref and 'ips' in ref else '')
    tb, ib = a.train_batches, a.infer_batches
    print(f"\n## Training images/s at {a.size}x{a.size} (x = speed-up over 'released')\n")
    print('| config | ' + ' | '.join(f'batch {b}' for b in tb) + f' | peak GiB (b={tb[-1]}) |')
    print('|---|' + '---:|' * (len(tb) + 1))
    for n in names:
        if n not in res['train']: continue
        r = res['train'][n]; last = r.get(tb[-1], {})
        mem = f"{last['mem_gib']:.2f}" if 'mem_gib' in last and last['mem_gib'] == last['mem_gib'] else '-'
        print(f'| {n} | ' + ' | '.join(cell(r.get(b), base.get(b)) for b in tb) + f' | {mem} |')
    basei = res['infer'].get('released', {})
    print(f"\n## Inference images/s at {a.size}x{a.size}\n")
    print('| config | ' + ' | '.join(f'batch {b}' for b in ib) + ' |')
    print('|---|' + '---:|' * len(ib))
    for n in names:
        if n in res['infer']: print(f'| {n} | ' + ' | '.join(cell(res['infer'][n].get(b), basei.get(b)) for b in ib) + ' |')
    print(f'\n(total {time.perf_counter() - start:.0f}s; brief: the released code trains at 135 img/s (b8) and 335 img/s (b32), fp32, H100)')
    if a.json:
        with open(a.json, 'w') as fh: json.dump(dict(device=gpu, torch=torch.__version__, args=vars(a), results=res), fh, indent=1, default=str)
    return res

if __name__ == '__main__':
    main()
