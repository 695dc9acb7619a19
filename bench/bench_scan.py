"""Selective scan: forward and forward+backward time, peak memory and achieved bandwidth of every implementation,
side by side in one process.

    python bench/bench_scan.py                       # CPU: small dim, L 216 and L 4096 (parallel/chunked vs ref)
    python bench/bench_scan.py --device cuda         # GPU: (16, 768, 216, 16) and (8, 1536, 4096, 16), incl. mamba-ssm

Bytes/s is the *minimum* traffic of a fused kernel (read u, delta, z, B, C and write out; backward also reads
the output gradient and writes the input gradients) divided by the time: the PyTorch paths move far more than
that, so their number is an "effective" bandwidth, comparable across implementations.
"""
import argparse, sys, time, math
import torch
from medseg_tutor.core import benchmark, env_info
from medseg_tutor.ssm.scan import selective_scan, cuda_kernel_available, triton_available

PEAK_BW = {'H100': 3.35e12, 'H200': 4.8e12}   # HBM bandwidth from the vendors' datasheets (bytes/s)


def inputs(batch, dim, L, N, device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    t = dict(u=r(batch, dim, L), delta=r(batch, dim, L) * 0.5 - 2.0, A=-torch.arange(1., N + 1).repeat(dim, 1),
             B=r(batch, N, L), C=r(batch, N, L), D=torch.ones(dim), z=r(batch, dim, L), delta_bias=r(dim) * 0.1)
    return {k: v.to(device=device, dtype=dtype if k in ('u', 'delta', 'z', 'B', 'C') else torch.float32) for k, v in t.items()}


def min_bytes(batch, dim, L, N, esize, backward):
    fwd = (4 * batch * dim * L + 2 * batch * N * L) * esize          # u, delta, z, out; B, C
    bwd = (7 * batch * dim * L + 4 * batch * N * L) * esize          # + gout, gu, gdelta, gz; gB, gC
    return fwd + (bwd if backward else 0)


def run_one(impl, t, device, reps, fwd_only=False):
    keys = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')
    leaves = {k: v.detach().clone().requires_grad_() for k, v in t.items()}
    args = [leaves[k] for k in keys]
    def fwd():
        with torch.no_grad(): return selective_scan(*args, delta_softplus=True, impl=impl)
    def fwd_bwd():
        out = selective_scan(*args, delta_softplus=True, impl=impl)
        out.backward(torch.ones_like(out))
    res = {}
    cuda = device == 'cuda'
    for name, fn in (('fwd', fwd), ('fwd+bwd', fwd_bwd)):
        if fwd_only and name == 'fwd+bwd': res[name] = None; res[name + ' mem'] = None; continue
        if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
        try:
            res[name] = benchmark(fn, warmup=1 if reps <= 3 else 2, reps=reps)['median_ms']
            res[name + ' mem'] = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else None
        except torch.OutOfMemoryError:
            res[name] = res[name + ' mem'] = float('nan')
        for v in leaves.values(): v.grad = None
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16', 'float16'])
    p.add_argument('--shapes', default=None, help="';'-separated batch,dim,L,N (default depends on the device)")
    p.add_argument('--impls', default=None, help='comma-separated (default: every implementation available here)')
    p.add_argument('--reps', type=int, default=None)
    p.add_argument('--ref-max-L', type=int, default=100000, help='run impl=ref only up to this L (it is a Python loop)')
    a = p.parse_args(argv)
    dtype = getattr(torch, a.dtype)
    cuda = a.device == 'cuda'
    if not cuda: torch.set_num_threads(1)
    shapes = a.shapes or ('16,768,216,16;8,1536,4096,16' if cuda else '2,32,216,16;1,8,4096,16')
    shapes = [tuple(int(x) for x in s.split(',')) for s in shapes.split(';')]
    impls = a.impls.split(',') if a.impls else (
        ['cuda'] * (cuda and cuda_kernel_available()) + ['triton'] * (cuda and triton_available()) + ['chunked', 'parallel', 'ref'])
    reps = a.reps or (10 if cuda else 3)
    info = env_info()
    gpu = torch.cuda.get_device_name() if cuda else None
    peak = next((v for k, v in PEAK_BW.items() if gpu and k in gpu), None)
    print(f"# bench_scan  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  device={info['device']}  torch={info['torch']}  "
          f"dtype={a.dtype}  threads={torch.get_num_threads()}  reps={reps}")
    for (batch, dim, L, N) in shapes:
        t = inputs(batch, dim, L, N, a.device, dtype)
        esize = torch.finfo(dtype).bits // 8
        rows = {}
        for impl in impls:
            if impl == 'ref' and L > a.ref_max_L: continue
            r = run_one(impl, t, a.device, reps if impl != 'ref' else min(reps, 3))
            rows[impl] = r
        base = 'cuda' if 'cuda' in rows else 'ref' if 'ref' in rows else None
        print(f"\n## (batch {batch}, dim {dim}, L {L}, N {N})  ratios vs {base}; GB/s = fused-kernel minimum bytes / time"
              + (f"; peak {peak / 1e9:.0f} GB/s" if peak else ''))
        hdr = f"| impl | fwd ms | fwd+bwd ms | fwd / {base} | fwd+bwd / {base} | fwd+bwd GB/s |" + (" % peak |" if peak else "") + \
              (" peak mem fwd MiB | peak mem fwd+bwd MiB |" if cuda else "")
        print(hdr); print('|' + '---|' * (hdr.count('|') - 1))
        for impl, r in rows.items():
            f, fb = r['fwd'], r['fwd+bwd']
            bf, bfb = rows[base]['fwd'], rows[base]['fwd+bwd']
            gbs = min_bytes(batch, dim, L, N, esize, True) / (fb * 1e-3) / 1e9 if fb and fb == fb else float('nan')
            line = f"| {impl} | {f:.3f} | {fb:.3f} | {f / bf:.2f} | {fb / bfb:.2f} | {gbs:.1f} |"
            if peak: line += f" {100 * gbs * 1e9 / peak:.1f} |"
            if cuda: line += f" {r['fwd mem']:.0f} | {r['fwd+bwd mem']:.0f} |"
            print(line)
        sys.stdout.flush()


if __name__ == '__main__':
    main()
