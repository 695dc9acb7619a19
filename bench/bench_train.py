"""Training throughput of MobileUtr at 256x256 with the engine's step (forward, 0.5 BCE + Dice, backward, fused SGD):
fp32 vs bf16 + channels_last (+ torch.compile), batch 8 and 32, images/s side by side in one process.

  python bench/bench_train.py [--batch-sizes 8 32] [--compile default reduce-overhead] [--steps 40] [--out table.md]
"""
import sys, argparse, time, traceback
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from medseg_tutor.core import env_info
from medseg_tutor.train.engine import train_throughput
from medseg_tutor.nets.mobileutr import mobileutr

# the released code's speed on an H100 (batch 8 / 32, fp32, DataLoader), as given in the issue brief
RELEASED = {8: 135.0, 32: 335.0}

def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('--batch-sizes', type=int, nargs='+', default=[8, 32])
    p.add_argument('--compile', nargs='*', default=['default', 'reduce-overhead'], help="torch.compile modes to add ('' for none)")
    p.add_argument('--compile-batch-sizes', type=int, nargs='+', default=[8], help='batch sizes that get the compile rows')
    p.add_argument('--steps', type=int, default=40)
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--out')
    a = p.parse_args(argv)
    torch.backends.cudnn.benchmark = True
    info = env_info(); print(info['device'], 'torch', info['torch'], flush=True)
    eager = [('fp32', dict()), ('bf16 + channels_last', dict(amp='bf16', channels_last=True))]
    comp = [(f'bf16 + channels_last + compile({m})', dict(amp='bf16', channels_last=True, compile=True if m == 'default' else m))
            for m in a.compile if m]
    # eager rows first (seconds), compiled ones last (each compiles for a minute or so)
    runs = [(bs, n, kw) for bs in a.batch_sizes for n, kw in eager] + [(bs, n, kw) for bs in a.compile_batch_sizes for n, kw in comp]
    rows, base = [], {}
    for bs, name, kw in runs:
            try:
                t0 = time.time()
                r = train_throughput(mobileutr(), batch_size=bs, size=a.size, steps=a.steps, warmup=10 if 'compile' not in kw else 15, **kw)
                base.setdefault(bs, r['img_s'])
                rows.append((bs, name, r['img_s'], r['ms_step'], r['img_s'] / base[bs], r['img_s'] / RELEASED.get(bs, float('nan')), time.time() - t0))
            except Exception as e:
                traceback.print_exc(limit=2)
                rows.append((bs, name + f' FAILED ({type(e).__name__})', float('nan'), float('nan'), float('nan'), float('nan'), 0.0))
            print(f"  batch {rows[-1][0]:>3}  {rows[-1][1]:<44} {rows[-1][2]:8.0f} img/s", flush=True)
    lines = ['| batch | config | img/s | ms/step | vs fp32 | vs released code | wall s (incl. compile) |', '|---|---|---|---|---|---|---|']
    lines += [f'| {b} | {n} | {i:.0f} | {m:.1f} | {x:.2f}x | {y:.1f}x | {w:.0f} |' for b, n, i, m, x, y, w in sorted(rows, key=lambda r: r[0])]
    table = '\n'.join(lines)
    print(f"\nMobileUtr training throughput at {a.size}x{a.size}, {info['device']}, torch {info['torch']}\n" + table)
    if a.out: Path(a.out).write_text(table + '\n')

if __name__ == '__main__': main()
