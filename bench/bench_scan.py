"""Selective scan: forward and forward+backward time, peak memory and achieved bandwidth of every implementation,
side by side in one process; on a GPU also the whole Mamba block against `mamba_ssm.Mamba` with the same weights.

    python bench/bench_scan.py                       # CPU: inference (2, 256, 2048, 16), training (1, 64, 2048, 16)
    python bench/bench_scan.py --shapes "2,32,216,16:fwd;1,8,4096,16"   # ':fwd' = forward only
    python bench/bench_scan.py --device cuda         # GPU: every shape of issue 17, fp32 and bf16, + the Mamba block

Bytes/s is the *minimum* traffic of a fused kernel (read u, delta, z, B, C and write out; backward also reads
the output gradient and writes the input gradients) divided by the time: the PyTorch paths move far more than
that, so their number is an "effective" bandwidth, comparable across implementations.
Implementations: ref (Python loop, the oracle), parallel, chunked, blocked (CPU inference only), triton (ours),
triton_scan (our first kernel, Appendix A of nbs/01; only with --impls), cuda (mamba-ssm's selective_scan_fn), auto.
On a GPU, the Triton rows also print the launch config the autotuner picked (BD, warps) for forward and backward.
"""
import argparse, sys, time, math
import torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without the package installed
from medseg_tutor.core import benchmark, env_info
from medseg_tutor.ssm.scan import selective_scan, cuda_kernel_available, triton_available

PEAK_BW = {'H100': 3.35e12, 'H200': 4.8e12}   # HBM bandwidth from the vendors' datasheets (bytes/s)
KEYS = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')


def inputs(batch, dim, L, N, device, dtype, G=0, seed=0):
    "All options on; variable B/C (G = 0) or grouped (batch, G, N, L)."
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    bc = (batch, G, N, L) if G else (batch, N, L)
    t = dict(u=r(batch, dim, L), delta=r(batch, dim, L) * 0.5 - 2.0, A=-torch.arange(1., N + 1).repeat(dim, 1),
             B=r(*bc), C=r(*bc), D=torch.ones(dim), z=r(batch, dim, L), delta_bias=r(dim) * 0.1)
    return {k: v.to(device=device, dtype=dtype if k in ('u', 'delta', 'z', 'B', 'C') else torch.float32) for k, v in t.items()}


def min_bytes(batch, dim, L, N, esize, backward, G=1):
    fwd = (4 * batch * dim * L + 2 * batch * G * N * L) * esize          # u, delta, z, out; B, C
    bwd = (7 * batch * dim * L + 4 * batch * G * N * L) * esize          # + gout, gu, gdelta, gz; gB, gC
    return fwd + (bwd if backward else 0)


def gpu_time(fn, warmup, reps):
    "Median ms over `reps` calls timed with CUDA events (after `warmup` calls: compilation, autotuning)."
    for _ in range(warmup): fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize(); ts.append(a.elapsed_time(b))
    return sorted(ts)[len(ts) // 2]


def scan_fn(impl):
    if impl == 'triton_scan':
        from medseg_tutor.ssm.scan import _selective_scan_triton
        return lambda *a, delta_softplus: _selective_scan_triton(*a, delta_softplus, kernel='scan')[0]
    return lambda *a, delta_softplus: selective_scan(*a, delta_softplus=delta_softplus, impl=impl)


def run_one(impl, t, device, reps, fwd_only=False):
    leaves = {k: v.detach().clone().requires_grad_() for k, v in t.items()}
    args = [leaves[k] for k in KEYS]
    f = scan_fn(impl)
    def fwd():
        with torch.no_grad(): return f(*args, delta_softplus=True)
    def fwd_bwd():
        out = f(*args, delta_softplus=True)
        out.backward(torch.ones_like(out))
    res = {}
    cuda = device == 'cuda'
    for name, fn in (('fwd', fwd), ('fwd+bwd', fwd_bwd)):
        if fwd_only and name == 'fwd+bwd': res[name] = res[name + ' mem'] = float('nan'); continue
        if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
        try:
            if cuda: res[name] = gpu_time(fn, 3, reps)
            else: res[name] = benchmark(fn, warmup=1, reps=reps)['median_ms']
            res[name + ' mem'] = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else float('nan')
        except torch.OutOfMemoryError:
            res[name] = res[name + ' mem'] = float('nan')
        for v in leaves.values(): v.grad = None
    return res


def picked_configs():
    "The (BD, warps) each autotuned Triton kernel picked so far, per key (dim, L, N, [store_hs,] dtypes)."
    from medseg_tutor.ssm import scan
    out = []
    for name in ('fwd_tuned', 'bwd_tuned'):
        for key, cfg in getattr(getattr(scan, name, None), 'cache', {}).items():
            ints = ','.join(str(x) for x in key if isinstance(x, int))
            dts = '/'.join(sorted({str(x).replace('torch.', '') for x in key if not isinstance(x, int)}))
            out.append(f"{name}[{ints} {dts}] = (BD {cfg.kwargs.get('BD')}, warps {cfg.num_warps}" + (f", VEC {cfg.kwargs['VEC']})" if 'VEC' in cfg.kwargs else ')'))
    return '\n'.join(['', '## Launch configs picked by the autotuner (key: dim, L, N[, store_hs] dtypes)'] + out)


def table(title, rows, base, batch, dim, L, N, esize, G, peak, cuda, out=sys.stdout):
    print(f"\n## {title}  ratios = impl / {base}; GB/s = fused-kernel minimum bytes / time"
          + (f"; peak {peak / 1e9:.0f} GB/s" if peak else ''), file=out)
    hdr = (f"| impl | fwd ms | fwd+bwd ms | fwd / {base} | fwd+bwd / {base} | fwd GB/s | fwd+bwd GB/s |"
           + (" fwd+bwd % peak |" if peak else "") + (" peak mem fwd MiB | peak mem fwd+bwd MiB |" if cuda else ""))
    print(hdr, file=out); print('|' + '---|' * (hdr.count('|') - 1), file=out)
    for impl, r in rows.items():
        f, fb = r['fwd'], r['fwd+bwd']
        bf, bfb = rows[base]['fwd'], rows[base]['fwd+bwd']
        gf = min_bytes(batch, dim, L, N, esize, False, G) / (f * 1e-3) / 1e9
        gfb = min_bytes(batch, dim, L, N, esize, True, G) / (fb * 1e-3) / 1e9
        line = f"| {impl} | {f:.3f} | {fb:.3f} | {f / bf:.2f} | {fb / bfb:.2f} | {gf:.0f} | {gfb:.0f} |"
        if peak: line += f" {100 * gfb * 1e9 / peak:.1f} |"
        if cuda: line += f" {r['fwd mem']:.0f} | {r['fwd+bwd mem']:.0f} |"
        print(line, file=out)
    out.flush()


def mamba_block(dtype, reps, batch=8, L=4096, d_model=768):
    "Our Mamba (impl='triton' and 'cuda') vs mamba_ssm.Mamba, same weights, fp32 or bf16 autocast."
    from medseg_tutor.ssm.mamba import Mamba
    from mamba_ssm import Mamba as MambaSSM
    torch.manual_seed(0)
    theirs = MambaSSM(d_model).cuda()
    ours = Mamba(d_model).cuda(); ours.load_state_dict(theirs.state_dict())
    h = torch.randn(batch, L, d_model, device='cuda')
    ac = dict(device_type='cuda', dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    rows = {}
    for name, call in (('mamba_ssm.Mamba', lambda x: theirs(x)), ('ours triton', lambda x: ours(x, impl='triton')),
                       ('ours cuda scan', lambda x: ours(x, impl='cuda'))):
        x = h.clone().requires_grad_()
        def fwd():
            with torch.no_grad(), torch.autocast(**ac): return call(x)
        def fwd_bwd():
            with torch.autocast(**ac): y = call(x)
            y.float().sum().backward()
        r = {}
        for k, fn in (('fwd', fwd), ('fwd+bwd', fwd_bwd)):
            torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
            r[k] = gpu_time(fn, 3, reps); r[k + ' mem'] = (torch.cuda.max_memory_allocated() - base) / 2**20
        with torch.no_grad(), torch.autocast(**ac):
            r['maxdiff'] = (call(h).float() - theirs(h).float()).abs().max().item()
        rows[name] = r
    print(f"\n## Mamba block (batch {batch}, L {L}, d_model {d_model}), {'bf16 autocast' if ac['enabled'] else 'fp32'}; "
          "mamba_ssm.Mamba without causal-conv1d installed = its nn.Conv1d path + selective_scan_fn")
    print("| model | fwd ms | fwd+bwd ms | fwd / mamba_ssm | fwd+bwd / mamba_ssm | peak mem fwd+bwd MiB | max |out diff| |")
    print("|---|---|---|---|---|---|---|")
    b = rows['mamba_ssm.Mamba']
    for name, r in rows.items():
        print(f"| {name} | {r['fwd']:.3f} | {r['fwd+bwd']:.3f} | {r['fwd'] / b['fwd']:.2f} | {r['fwd+bwd'] / b['fwd+bwd']:.2f} | "
              f"{r['fwd+bwd mem']:.0f} | {r['maxdiff']:.1e} |")
    sys.stdout.flush()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtypes', default=None, help="comma-separated (default: float32 on CPU, float32,bfloat16 on GPU)")
    p.add_argument('--shapes', default=None, help="';'-separated batch,dim,L,N[,G] (default depends on the device)")
    p.add_argument('--impls', default=None, help='comma-separated (default: every implementation available here)')
    p.add_argument('--reps', type=int, default=None)
    p.add_argument('--slow-max-numel', type=float, default=2e8,
                   help='run the PyTorch paths (ref/parallel/chunked) on the GPU only below batch*dim*L*N of this')
    p.add_argument('--no-mamba', action='store_true', help='skip the Mamba block rows (GPU)')
    a = p.parse_args(argv)
    cuda = a.device == 'cuda'
    if not cuda: torch.set_num_threads(1)
    dtypes = [getattr(torch, d) for d in (a.dtypes or ('float32,bfloat16' if cuda else 'float32')).split(',')]
    shapes = a.shapes or ('16,768,216,16;8,1536,4096,16;32,2048,1024,16;8,1536,4096,16,4' if cuda
                          else '2,256,2048,16:fwd;1,64,2048,16')     # ':fwd' = inference only (no backward)
    shapes = [(tuple(int(x) for x in s.split(':')[0].split(',')), s.endswith(':fwd')) for s in shapes.split(';')]
    if cuda: impls = ['cuda'] * cuda_kernel_available() + ['triton'] * triton_available() + ['chunked']
    else: impls = ['auto', 'blocked', 'chunked', 'parallel', 'ref']
    if a.impls: impls = a.impls.split(',')
    reps = a.reps or (10 if cuda else 3)
    info = env_info()
    gpu = torch.cuda.get_device_name() if cuda else None
    peak = next((v for k, v in PEAK_BW.items() if gpu and k in gpu), None)
    print(f"# bench_scan  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  device={gpu or info['device']}  "
          f"torch={info['torch']}  threads={torch.get_num_threads()}  reps={reps}")
    for shp, fwd_only in shapes:            # per shape: every dtype side by side (a cut-short run keeps whole shapes)
        for dtype in dtypes:
            batch, dim, L, N = shp[:4]; G = shp[4] if len(shp) > 4 else 0
            t = inputs(batch, dim, L, N, a.device, dtype, G)
            esize = torch.finfo(dtype).bits // 8
            rows = {}
            for impl in impls:
                if cuda and impl in ('ref', 'parallel', 'chunked') and batch * dim * L * N > a.slow_max_numel: continue
                if impl == 'triton_scan' and (dtype != torch.float32 or G): continue   # the first kernel: fp32 rows suffice
                try:
                    rows[impl] = run_one(impl, t, a.device, reps if impl != 'ref' else min(reps, 3),
                                         fwd_only=fwd_only or impl == 'blocked')
                except Exception as e:   # a benchmark reports and goes on
                    print(f"{impl}: {type(e).__name__}: {str(e)[:200]}")
            base = 'cuda' if 'cuda' in rows else 'ref' if 'ref' in rows else next(iter(rows))
            title = f"(batch {batch}, dim {dim}, L {L}, N {N}{f', G {G}' if G else ''}) {str(dtype)[6:]}"
            table(title, rows, base, batch, dim, L, N, esize, max(G, 1), peak, cuda)
    if cuda and triton_available():
        try: print(picked_configs(), flush=True)
        except Exception as e: print(f"picked configs: {type(e).__name__}: {e}")
    if cuda and not a.no_mamba and cuda_kernel_available():
        for dtype in dtypes: mamba_block(dtype, reps)


if __name__ == '__main__':
    main()
