"""Where a training step of the engine spends its time beyond the network's own work: MobileUtr (or any registered 2D
model) at 256², batch 8, bf16 + channels_last, optionally compiled. The rows are measured side by side in one process:

  bare     forward, loss, backward, fused SGD step (engine.train_throughput: the figure bench_train.py reports)
  synced   Trainer.train_step with the finite check looking every step (finite_check_every=1): the gradient norm, one
           host sync per step (the host waits for the GPU before it queues the next step) and the schedule. This was
           the engine's only step until 2026-11-30 (H200: 1.20x the bare time; without the sync 1.01x).
  engine   Trainer.train_step as trained (finite_check_every=16): a non-finite step is skipped on the device by the
           fused optimiser, and the host looks every 16 steps.
  epoch    Trainer.train_epoch over random images: it adds batching, augmentation and host-to-device copies.

    python bench/bench_engine_step.py [--model mobileutr] [--compile reduce-overhead] [--steps 60] [--out table.md]
"""
import sys, argparse, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from medseg_tutor.core import env_info
from medseg_tutor.registry import create_model
from medseg_tutor.train.engine import Trainer, TrainConfig, train_throughput
from medseg_tutor.data.tensors import TensorSegData

def _sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()

def time_steps(t:Trainer, batch, warmup:int, steps:int) -> float:
    "Seconds per `Trainer.train_step` on one fixed batch, after `warmup` steps."
    for _ in range(warmup): t.train_step(batch)
    _sync(t.device); t0 = time.perf_counter()
    for _ in range(steps): t.train_step(batch)
    _sync(t.device)
    return (time.perf_counter() - t0) / steps

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default='mobileutr'); p.add_argument('--size', type=int, default=256)
    p.add_argument('--batch', type=int, default=8); p.add_argument('--steps', type=int, default=60)
    p.add_argument('--warmup', type=int, default=15); p.add_argument('--images', type=int, default=256, help='images in the epoch row')
    p.add_argument('--amp', default='bf16', help="'bf16' or 'none' (fp32)")
    p.add_argument('--compile', default='reduce-overhead', help="a torch.compile mode, or 'none'")
    p.add_argument('--device', default='auto'); p.add_argument('--out')
    a = p.parse_args(argv)
    torch.backends.cudnn.benchmark = True
    amp = None if a.amp == 'none' else a.amp
    comp = False if a.compile == 'none' else a.compile
    info = env_info(); print(info['device'], 'torch', info['torch'], flush=True)
    kw = dict(in_channels=3, num_classes=1)
    rows = []
    r = train_throughput(create_model(a.model, **kw), batch_size=a.batch, size=a.size, amp=amp, channels_last=True,
                         compile=comp, steps=a.steps, warmup=a.warmup, device=a.device)
    rows.append(('bare', r['ms_step'] / 1e3))
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (a.images, 3, a.size, a.size), dtype=torch.uint8, generator=g)
    masks = (torch.rand(a.images, 1, a.size, a.size, generator=g) > 0.7).to(torch.uint8)
    data = TensorSegData(imgs, masks, augment='released')
    cfg = TrainConfig(epochs=1, batch_size=a.batch, lr=0.01, optimizer='sgd', amp=amp, channels_last=True, compile=comp,
                      progress=False, verbose=False)
    t = Trainer(create_model(a.model, **kw), data, None, cfg, device=a.device)
    batch = next(iter(t.batches(0)))
    t.train_step(batch)                # the first step is always synced: it compiles, and creates the optimiser's state
    for name, every in (('synced', 1), ('engine', 16)):
        t.cfg = t.cfg.replace(finite_check_every=every)
        rows.append((name, time_steps(t, batch, a.warmup, a.steps)))
    if not t._deferred(): print('note: this optimiser is not fused here, so the engine row synced every step too', flush=True)
    t.train_epoch(0)                   # one epoch to warm the data path, then the measured one
    ep = t.train_epoch(1)
    rows.append(('epoch', a.batch / ep['img_s']))
    base = rows[0][1]
    head = (f"{info['device']}, torch {info['torch']}; {a.model} at {a.size}², batch {a.batch}, {a.amp}, channels_last, "
            f"compile {a.compile}; {a.steps} timed steps after {a.warmup}")
    lines = [head, '', '| step | ms/step | img/s | × bare time |', '|---|---:|---:|---:|']
    lines += [f"| {n} | {s * 1e3:.2f} | {a.batch / s:.0f} | {s / base:.2f} |" for n, s in rows]
    out = '\n'.join(lines); print(out)
    if a.out: Path(a.out).write_text(out + '\n')

if __name__ == '__main__': main()
