"""What to do with the last, smaller batch of an epoch when the training step is compiled, side by side in one process:
MobileUtr, bf16 + channels_last + torch.compile(reduce-overhead), batch 8, an epoch of 452 images (= BUSI split 1:
56 batches of 8 and one of 4), the engine's `Trainer`.

- `eager`     (the engine's default since 2026-11-29): full batches through the compiled module, the odd one eagerly.
- `recompile` (the engine before): every batch through the compiled module; the odd size compiles forward + backward
  a second time, with a symbolic batch dimension.
- `dynamic`   the batch dimension marked dynamic from the first call: one compile for both sizes (CUDA graphs are still
  recorded once per size).

Measured on an H200 (2026-11-29, full runs, not this script): `eager` compiled in 84-108 s and trained an epoch in
0.84-0.87 s; `recompile` took ~200 s to compile and 0.63 s per epoch. This script puts the three in one table.
The Inductor FX graph cache is switched off and Dynamo reset between rows, so each row compiles from scratch.

    python bench/bench_compile_odd.py [--epochs 12] [--strategies eager recompile dynamic] [--device cuda]
    python bench/bench_compile_odd.py --device cpu --size 32 --n-train 20 --epochs 2 --no-compile   # smoke test
"""
import sys, argparse, statistics, time, traceback
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch, torch._dynamo
from medseg_tutor.core import env_info
from medseg_tutor.train.engine import Trainer, TrainConfig, CompiledFullBatches
from medseg_tutor.data.tensors import TensorSegData
from medseg_tutor.nets.mobileutr import mobileutr

class DynamicBatch:
    "The compiled module, called with dimension 0 of the input marked dynamic (one graph for every batch size)."
    def __init__(self, wrapped:CompiledFullBatches): self.w = wrapped
    def __call__(self, x, *a, **k):
        torch._dynamo.mark_dynamic(x, 0)
        return self.w.compiled(x, *a, **k)
    def train(self, mode=True): self.w.train(mode); return self
    def __getattr__(self, n): return getattr(self.__dict__['w'], n)

def data(n, size, seed):
    g = torch.Generator().manual_seed(seed)
    im = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    m = (torch.rand(n, 1, size, size, generator=g) > 0.7).to(torch.uint8)
    return TensorSegData(im, m, augment=True)

def row(strategy, a):
    torch._dynamo.reset()
    cfg = TrainConfig(epochs=a.epochs, batch_size=8, lr=0.01, amp='bf16', channels_last=True, progress=False, verbose=False,
                      compile=False if a.no_compile else 'reduce-overhead', seed=41)
    t = Trainer(mobileutr(), data(a.n_train, a.size, 0), data(max(8, a.n_train // 4), a.size, 1), cfg, device=a.device)
    if isinstance(t.net, CompiledFullBatches):
        if strategy == 'recompile': t.net = t.net.compiled
        elif strategy == 'dynamic': t.net = DynamicBatch(t.net)
    t0 = time.perf_counter(); res = t.fit(); wall = time.perf_counter() - t0
    es = [h['epoch_s'] for h in res['history']]
    steady = statistics.median(es[2:] or es[1:] or es)
    return dict(strategy=strategy, first=es[0], steady=steady, img_s=a.n_train / steady, wall=wall)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--strategies', nargs='+', default=['eager', 'recompile', 'dynamic'], choices=['eager', 'recompile', 'dynamic'])
    p.add_argument('--epochs', type=int, default=12)
    p.add_argument('--n-train', type=int, default=452)
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--no-compile', action='store_true', help='smoke test of the script itself (every row then runs eagerly)')
    a = p.parse_args(argv)
    import torch._inductor.config as ic
    ic.fx_graph_cache = False
    info = env_info(); print(info['device'], 'torch', info['torch'], flush=True)
    rows = []
    for s in a.strategies:
        try: rows.append(row(s, a))
        except Exception as e:
            traceback.print_exc(limit=3); rows.append(dict(strategy=f'{s} FAILED ({type(e).__name__})', first=float('nan'),
                                                       steady=float('nan'), img_s=float('nan'), wall=float('nan')))
        r = rows[-1]; print(f"  {r['strategy']:<12} epoch 1 {r['first']:7.1f} s  steady {r['steady']:.3f} s/epoch", flush=True)
    base = next((r['steady'] for r in rows if r['strategy'] == 'eager'), float('nan'))
    print(f"\nLast-batch strategies, MobileUtr {a.size}², batch 8, {a.n_train} training images/epoch, {a.epochs} epochs, "
          f"{info['device']}, torch {info['torch']}\n")
    print('| strategy | epoch 1 s (compile) | training s / epoch (median from epoch 3) | img/s | vs eager | run wall s |')
    print('|---|---:|---:|---:|---:|---:|')
    for r in rows:
        print(f"| {r['strategy']} | {r['first']:.1f} | {r['steady']:.3f} | {r['img_s']:.0f} | {base / r['steady']:.2f}x | {r['wall']:.0f} |")

if __name__ == '__main__': main()
