"""MambaMIM pre-training step on the device: milliseconds per optimiser step and peak memory of the full-size model
(HyMamba base, four 96³ crops, the released optimiser and schedules) for each selective-scan implementation, ours vs the
released semantics, measured through the package's one training loop (`Trainer.train_step` with `mim_pretrain_step`
and the `WeightDecayCosine` callback), printed as a table and written to OUT/step.json.

    python bench/mim_step_device.py --out runs/mambamim [--crops 4 --size 96 --warmup 3 --steps 10]
"""
import argparse, json, os, time
from pathlib import Path
import torch
import sys
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without the package installed
from medseg_tutor.core import seed_everything, get_device
from medseg_tutor.ssm.scan import cuda_kernel_available
from medseg_tutor.nets.hymamba import hymamba_base
from medseg_tutor.mim.pretrain import MambaMIM, mim_pretrain_step, WeightDecayCosine
from medseg_tutor.train.engine import Trainer, TrainConfig

class _Crops:
    "The batch protocol over one fixed batch of crops (timing only)."
    def __init__(self, x): self.x = x
    def __len__(self): return len(self.x)
    def batch(self, idx, gen=None): return (self.x[idx.to(self.x.device)],)

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default=os.environ.get('OUT', 'runs/mambamim'))
    p.add_argument('--crops', type=int, default=4, help='crops per step (released: 4 from one volume)')
    p.add_argument('--size', type=int, default=96, help='crop edge (released: 96)')
    p.add_argument('--warmup', type=int, default=3); p.add_argument('--steps', type=int, default=10)
    p.add_argument('--device', default='auto')
    a = p.parse_args()
    dev = get_device(a.device); out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    if dev.type == 'cuda': torch.backends.cudnn.benchmark = True
    x = torch.rand(a.crops, 1, a.size, a.size, a.size, device=dev)
    impls = (['cuda'] if dev.type == 'cuda' and cuda_kernel_available() else []) + (['triton'] if dev.type == 'cuda' else []) + ['chunked']
    cfg = TrainConfig(epochs=100, batch_size=a.crops, optimizer='adamw', lr=1e-4, weight_decay=0.04, schedule='cosine',
                      warmup_epochs=10, clip_grad=5.0, progress=False, verbose=False)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == 'cuda' else (lambda: None)
    rows = []
    for impl in impls:
        for released in (False, True):
            seed_everything(0); name = 'released semantics' if released else 'ours'
            try:
                model = MambaMIM(hymamba_base(mamba_impl=impl, img_size=a.size), released=released)
                wd = WeightDecayCosine(0.04, 0.2)
                tr = Trainer(model, _Crops(x), None, cfg, step=mim_pretrain_step, callbacks=[wd], device=dev)
                batch = tr._prep(tr.train_data.batch(torch.arange(a.crops)))
                tr.model.train()
                for _ in range(a.warmup): wd.before_step(tr); tr.train_step(batch)
                sync()
                if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                for _ in range(a.steps): wd.before_step(tr); tr.train_step(batch)
                sync()
                ms = (time.perf_counter() - t0) / a.steps * 1e3
                gib = torch.cuda.max_memory_allocated() / 2 ** 30 if dev.type == 'cuda' else float('nan')
                rows.append(dict(impl=impl, model=name, ms=ms, gib=gib, params=sum(q.numel() for q in model.parameters())))
            except Exception as e: rows.append(dict(impl=impl, model=name, error=repr(e)[:200]))
            print(rows[-1], flush=True); model = tr = None
            if dev.type == 'cuda': torch.cuda.empty_cache()
    json.dump(rows, open(out/'step.json', 'w'), indent=1)
    print(f"MambaMIM pre-training step, {a.crops} crops of {a.size}³, {dev}:")
    print("| scan impl | model | step (ms) | peak mem (GiB) | params |"); print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['impl']} | {r['model']} | " + (f"{r['ms']:.0f} | {r['gib']:.2f} | {r['params']:,} |" if 'ms' in r else f"error: {r['error']} | | |"))

if __name__ == '__main__': main()
