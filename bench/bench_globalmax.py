"""Global max over H, W as SRSNet's attention layers take it: `F.adaptive_max_pool2d(x, 1)` (the released layers) vs
`x.amax((2, 3), keepdim=True)` (ours 2026-11-29) vs `x.flatten(2).max(2).values` (`global_max`, ours since 2026-11-30:
amax's backward gave NaN under torch.compile + bf16), forward + backward, side by side in one process, on the feature
shapes of SRSNet's segmentation net at 256x256, batch 8. Prints a table of ratios; checks that the values are equal.

    python bench/bench_globalmax.py [--device cuda] [--dtype bf16] [--layout channels_last] [--reps 20]
"""
import argparse, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python3 bench/...` without the package installed
import torch, torch.nn.functional as F
from medseg_tutor.core import benchmark

SHAPES = [(8, 16, 256, 256), (8, 64, 128, 128), (8, 128, 64, 64), (8, 256, 32, 32)]

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', default='bf16', choices=['bf16', 'fp32'])
    p.add_argument('--layout', default='channels_last', choices=['channels_last', 'contiguous'])
    p.add_argument('--reps', type=int, default=20)
    p.add_argument('--scale', type=int, default=1, help='divide H and W by this (CPU smoke runs)')
    a = p.parse_args()
    dt = torch.bfloat16 if a.dtype == 'bf16' else torch.float32
    fmt = torch.channels_last if a.layout == 'channels_last' else torch.contiguous_format
    print(f"global max over H, W, forward + backward; {a.device} {torch.cuda.get_device_name() if a.device == 'cuda' else ''}, "
          f"{a.dtype}, {a.layout}, torch {torch.__version__}\n")
    print("| shape (B, C, H, W) | adaptive_max_pool2d ms | amax ms | max(dim) ms | adaptive / amax | adaptive / max(dim) |")
    print("|---|---:|---:|---:|---:|---:|")
    for s in SHAPES:
        s = (s[0], s[1], s[2] // a.scale, s[3] // a.scale)
        x = torch.randn(s, device=a.device, dtype=dt).contiguous(memory_format=fmt).requires_grad_()
        g = torch.randn(s[0], s[1], 1, 1, device=a.device, dtype=dt)
        assert torch.equal(F.adaptive_max_pool2d(x, 1), x.amax((2, 3), keepdim=True))
        assert torch.equal(F.adaptive_max_pool2d(x, 1), x.flatten(2).max(2).values[..., None, None])
        def run(f):
            def step():
                y = f(x); (gx,) = torch.autograd.grad(y, x, g)
                return gx
            return step
        t_ad = benchmark(run(lambda t: F.adaptive_max_pool2d(t, 1)), warmup=3, reps=a.reps)
        t_am = benchmark(run(lambda t: t.amax((2, 3), keepdim=True)), warmup=3, reps=a.reps)
        t_mx = benchmark(run(lambda t: t.flatten(2).max(2).values[..., None, None]), warmup=3, reps=a.reps)
        ms = lambda t: t['median_ms']
        print(f"| {tuple(s)} | {ms(t_ad):.3f} | {ms(t_am):.3f} | {ms(t_mx):.3f} | {ms(t_ad) / ms(t_am):.1f}x | {ms(t_ad) / ms(t_mx):.1f}x |")

if __name__ == '__main__': main()
