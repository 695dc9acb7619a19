"""Are the gradients of a compiled bf16 SRSNet phase-2 step finite, and was the global max by `amax` what made them NaN?

On an H200 (torch 2.11, 2026-11-30) `bench_srsnet.py` row `ro+chk:RS` (bf16 + channels_last + compile(reduce-overhead)
+ the engine's finite check) stopped in its warm-up with a non-finite loss, while the eager bf16 row was finite. On a
CPU the compiled bf16 step gave NaN in every gradient of S from step 1 with the attention gates' `amax` global max,
finite gradients with `max(dim)` (`global_max`, the package since 2026-11-30): amax's backward divides by the number of
elements equal to the max, which Inductor counted as 0 (pytorch/pytorch#195214). This script puts both on the device:

1. the phase-2 training step (frozen R + S with DPConv; bench_srsnet's `make_step` recipe, SGD lr 0.01) for each
   --variants x --modes: loss and global grad norm of the first --steps steps, and how many gradient tensors were not
   finite at step 1. `amax` = the gates as they were before 2026-11-30 (patched in here), `max` = the package now;
2. if --budget leaves time, each attention gate alone (ChannelAttention, SpatialAttention, ECAGate), bf16, compiled:
   how many gradient elements are not finite, eager and compiled.

The compiled rows compile as the Trainer compiles: `compile_module`, with the Inductor options the SRS networks declare
(`SRSNET_COMPILE_OPTIONS`: mix-order reduction off; bench_srsnet.py says why); each gate, compiled alone, gets the same
options. `--mix-order on` sets it back on over the networks' option (torch's default).
Its tiny-network run with mix-order on (its default until 2026-11-30) was finite in fp32 / eager / reduce-overhead (H200,
torch 2.11, 2026-11-30): the failed compile needs the full-width network.

    python3 bench/check_srsnet_compile.py --device cuda --tiny --size 256 --batch 8 --budget 120   # meant for < 3 min on a GPU
    python3 bench/check_srsnet_compile.py --device cpu --tiny --size 32 --batch 2 --modes eager --steps 2   # smoke test
"""
import argparse, contextlib, sys, time, traceback
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch, torch._dynamo, torch.nn.functional as F
import medseg_tutor.blocks.dpconv as D, medseg_tutor.nets.srsnet as N
import bench_srsnet as B

_new = dict(gm=D.global_max, sa=D.SpatialAttention.forward)
def _sa_amax(self, x): return torch.sigmoid(self.conv(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))

def use_variant(v:str):
    "'max': the package's gates; 'amax': the global max by amax (the code before 2026-11-30)."
    gm = (lambda x: x.amax((2, 3))) if v == 'amax' else _new['gm']
    D.global_max = N.global_max = gm
    D.SpatialAttention.forward = _sa_amax if v == 'amax' else _new['sa']

def gates(dev, mix_order:str='off') -> list:
    "Markdown rows: each gate alone, bf16 channels_last, compiled (default mode), gradients finite?"
    rows, opts = [], {**N.SRSNET_COMPILE_OPTIONS, **B.compile_options(mix_order)}   # a part of the networks: their options
    for name, make in [('ChannelAttention', lambda: D.ChannelAttention(16)), ('SpatialAttention', lambda: D.SpatialAttention(7)),
                       ('ECAGate', lambda: N.ECAGate(3))]:
        torch.manual_seed(0); torch._dynamo.reset()
        g = make().to(dev, torch.bfloat16)
        f = lambda t: g(t * 1.5 + 0.1)
        x = torch.randn(8, 16, 32, 32, device=dev, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last).requires_grad_()
        res = []
        for fn in (f, B.compile_module(f, True, opts)):
            gr = torch.autograd.grad(fn(x).float().sum(), [x, *g.parameters()])
            res.append(sum(int((~t.isfinite()).sum()) for t in gr))
        rows.append(f"| {name} | {res[0]} | {res[1]} |")
    torch._dynamo.reset()
    return rows

def train_row(variant, mode, a, dev) -> str:
    cfg = {'fp32': 'fp32', 'eager': 'bf16cl', 'default': 'compile', 'reduce-overhead': 'ro'}[mode]
    label, amp, cl, cmode, _ = B.conf(cfg)
    torch._dynamo.reset()
    m, net, opt, x, y = B.setup('RS', cfg, a, dev)
    m.train()
    ctx = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if amp == 'bf16' else contextlib.nullcontext
    params = [p for g in opt.param_groups for p in g['params']]
    losses, norms, bad1, t0 = [], [], None, time.perf_counter()
    for i in range(a.steps):
        if cmode == 'reduce-overhead': torch.compiler.cudagraph_mark_step_begin()
        with ctx(): out = net(x)
        loss = B.segmentation_loss(out.float(), y)
        opt.zero_grad(set_to_none=True); loss.backward()
        if i == 0: bad1 = sum(int(not p.grad.isfinite().all()) for p in params if p.grad is not None)
        gn = torch.nn.utils.clip_grad_norm_(params, float('inf'))
        losses.append(loss.item()); norms.append(gn.item())
        opt.step()
        if i == 0: t1 = time.perf_counter()
    fin = all(map(lambda v: v == v and abs(v) != float('inf'), losses + norms))
    f = lambda vs: ' '.join(f'{v:.4g}' for v in vs)
    return (f"| {variant} | {mode} | {'yes' if fin else '**NO**'} | {bad1} of {len(params)} | {f(losses)} | {f(norms)} | "
            f"{t1 - t0:.0f} |")

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='auto')
    p.add_argument('--size', type=int, default=256); p.add_argument('--batch', type=int, default=8)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--tiny', action='store_true', help="bench_srsnet's narrow one-block networks (quick compiles)")
    p.add_argument('--variants', nargs='+', default=['max', 'amax'], choices=['max', 'amax'])
    p.add_argument('--modes', nargs='+', default=['fp32', 'eager', 'reduce-overhead'], choices=['fp32', 'eager', 'default', 'reduce-overhead'],
                   help="fp32: fp32 eager; the others bf16 autocast + channels_last, eager or compiled")
    p.add_argument('--no-gates', action='store_true', help='skip part 2')
    p.add_argument('--mix-order', choices=['off', 'on'], default='off',
                   help="Inductor's mix-order reduction when compiling: off (default, as the SRS networks declare) or on "
                        "(torch's default, set over the networks' option)")
    p.add_argument('--budget', type=float, default=None, help='seconds: no new row starts after this')
    a = p.parse_args(argv)
    dev = B.get_device(a.device); T0 = time.perf_counter()
    if dev.type == 'cuda': torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'
    print(f"{name}, torch {torch.__version__}; phase 2 (frozen R + S, DPConv){', TINY networks' if a.tiny else ''}, "
          f"batch {a.batch}, {a.size}x{a.size}, {a.steps} steps, SGD lr 0.01; "
          f"{B.mix_order_note(a.mix_order).replace('compiled rows', 'compiled rows and gates')}\n", flush=True)
    print("| global max | mode | finite | non-finite grads at step 1 | loss per step | grad norm per step | step 1 s (compile) |")
    print("|---|---|---|---|---|---|---|", flush=True)
    rows = [(v, m) for m in a.modes if m in ('fp32', 'eager') for v in a.variants[:1]] + \
           [(v, m) for v in a.variants for m in a.modes if m not in ('fp32', 'eager')]   # eager: one variant (same values)
    for v, m in rows:
        if a.budget is not None and time.perf_counter() - T0 > a.budget: print(f"| {v} | {m} | skipped (--budget) | | | | |"); continue
        use_variant(v)
        try: print(train_row(v, m, a, dev), flush=True)
        except Exception as e:
            traceback.print_exc(limit=3); print(f"| {v} | {m} | FAILED: {type(e).__name__}: {str(e)[:100]} | | | | |", flush=True)
        if dev.type == 'cuda': torch.cuda.empty_cache()
    if not a.no_gates:
        for v in a.variants:
            if a.budget is not None and time.perf_counter() - T0 > a.budget: print(f"\ngates by {v}: skipped (--budget)"); continue
            use_variant(v)
            print(f"\ngates alone, bf16, global max by {v}: non-finite gradient elements\n\n| gate | eager | compiled |\n|---|---|---|")
            print('\n'.join(gates(dev, a.mix_order)), flush=True)
    use_variant('max')
    print(f"\n(total {time.perf_counter() - T0:.0f} s)")

if __name__ == '__main__': main()
