#!/usr/bin/env python
"""S6T token interpolation: vectorised `s6t_fill` vs a released-style loop (per sample, per run, one matrix power
per slot, like `MambaMIM.mask_token_every_batch`), at the released size: batch 16, C 384, 6³ grid, ratio 0.75.

Usage: python bench/bench_s6t.py [--device cpu|cuda] [--threads 1] [--batch 16] [--channels 384] [--grid 6]
                                 [--reps 5] [--ref-reps 1] [--step tiny|small|base]
Prints one table (forward; forward+backward) with the ratio. With --step, a second table: one MambaMIM pre-training
step (AdamW, clipping) of our model vs the released semantics (loop S6T + B1 layout, batch-wide token drop, the dead
96³ skip computed) on the same input (tiny: 64³, batch 4; small: 96³ batch 2; base: 96³ batch 4). Not a test: run it by hand, paste the table into
bench/RESULTS.md with the machine and date.
"""
import argparse, os, sys, time
import torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without the package installed
from medseg_tutor.core import benchmark, env_info, assert_close
from medseg_tutor.mim.masking import hybrid_mask
from medseg_tutor.mim.s6t import s6t_fill, s6t_fill_ref

def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--device', default='cpu'); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--batch', type=int, default=16); ap.add_argument('--channels', type=int, default=384)
    ap.add_argument('--grid', type=int, default=6); ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--ref-reps', type=int, default=1)
    ap.add_argument('--step', choices=['tiny', 'small', 'base'], default=None)
    a = ap.parse_args(argv)
    if a.device == 'cpu': torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    F = torch.randn(a.batch, a.channels, a.grid, a.grid, a.grid, generator=g).to(dev)
    vis = hybrid_mask(a.batch, a.grid, 0.75, generator=g).to(dev)
    A = (0.05 * torch.randn(a.channels, a.channels, generator=g)).to(dev)   # trained A is not zero; cost is the same
    # correctness first
    y, yr = s6t_fill(F, vis, A), s6t_fill_ref(F, vis, A)
    assert_close(y, yr, 'S6T fast vs loop')
    rows = []
    for what in ('forward', 'forward+backward'):
        def run(fn):
            def f():
                if what == 'forward':
                    with torch.no_grad(): fn(F, vis, A)
                else:
                    Ag = A.clone().requires_grad_(); Fg = F.clone().requires_grad_()
                    fn(Fg, vis, Ag).sum().backward()
            return f
        fast = benchmark(run(s6t_fill), warmup=2, reps=a.reps)['median_ms']
        slow = benchmark(run(s6t_fill_ref), warmup=0 if a.device == 'cpu' else 1, reps=a.ref_reps)['median_ms']
        rows.append((what, slow, fast, slow / fast))
    info = env_info()
    print(f"# S6T bench: batch {a.batch}, C {a.channels}, grid {a.grid}³, ratio 0.75, device {info['device']}, "
          f"threads {torch.get_num_threads()}, torch {info['torch']}")
    print(f"| pass | released-style loop (ms) | s6t_fill (ms) | speed-up |")
    print(f"|---|---|---|---|")
    for w, s, f, r in rows: print(f"| {w} | {s:.1f} | {f:.2f} | {r:.0f}× |")
    if a.step: bench_step(a, dev)

def bench_step(a, dev):
    from medseg_tutor.core import seed_everything
    from medseg_tutor.nets import hymamba as H
    from medseg_tutor.mim.pretrain import MambaMIM, make_optimizer
    size, bs, width = dict(tiny=(64, 4, 64), small=(96, 2, 256), base=(96, 4, 768))[a.step]
    x = torch.rand(bs, 1, size, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
    res = {}
    for released in (False, True):
        seed_everything(0)
        m = MambaMIM(getattr(H, f'hymamba_{a.step}')(), decoder_width=width, released=released).to(dev)
        opt = make_optimizer(m, 1e-4)
        def step():                     # one optimiser step as the Trainer does it (fp32, clip 5), timed bare
            loss, _ = m(x); opt.zero_grad(set_to_none=True); loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 5.0); opt.step()
        res[released] = benchmark(step, warmup=1, reps=a.reps)['median_ms']
    print(f"\n# pre-training step, hymamba_{a.step}, {size}³, batch {bs}, decoder width {width}")
    print("| model | step (ms) | ratio |\n|---|---|---|")
    print(f"| released semantics | {res[True]:.0f} | 1.00× |\n| ours | {res[False]:.0f} | {res[True] / res[False]:.2f}× |")

if __name__ == '__main__': main()
