"""SRSNet on the device: phase 1 (R reconstructs), phase 2 (frozen R guides S's DPConv), and the ablation
"S with vs without DPConv" (same seed, same init of every shared weight, same batches, same number of steps), all
through the package's one training loop (`medseg_tutor.train.engine.Trainer`, the steps of `medseg_tutor.train.srsnet`),
plus a DPConv micro-benchmark. Data: the caches .devcache/{busi256,sirst256}.npz (tools/make_devcache.py; BUSI split 1,
SIRST idx_427 train+val / test); a missing cache is replaced by a synthetic stand-in and the table says so.

    python bench/srsnet_device.py --out runs/srsnet_device [--size 128 --batch-size 8 --steps1 600 --steps2 1500 ...]
"""
import argparse, json, math, os, tempfile, time
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
import sys
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without the package installed
from medseg_tutor.core import seed_everything, get_device, benchmark
from medseg_tutor.data.tensors import TensorSegData
from medseg_tutor.data.synthetic import make_example_dataset
from medseg_tutor.data import datasets as D
from medseg_tutor.nets.srsnet import SRSReconstructionNet, SRSSegmentationNet, SRSNet
from medseg_tutor.blocks.dpconv import DPConv, dpconv_ref
from medseg_tutor.train.engine import Trainer, TrainConfig
from medseg_tutor.train.srsnet import reconstruction_step, reconstruction_evaluate, segmentation_loss

def parse():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default=os.environ.get('OUT', 'runs/srsnet_device'), help='folder for logs, runs, curves and the table')
    p.add_argument('--size', type=int, default=128, help='image edge (default 128)')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--steps1', type=int, default=600, help='phase-1 steps at most')
    p.add_argument('--steps2', type=int, default=1500, help='phase-2 steps at most (both arms get the same number)')
    p.add_argument('--sec1', type=float, default=25., help='phase-1 time budget per dataset (s)')
    p.add_argument('--sec2', type=float, default=95., help='phase-2 time budget per dataset, DPConv arm (s)')
    p.add_argument('--sets', default='busi,sirst', help='comma-separated: busi, sirst')
    p.add_argument('--dpconv-impl', default='grouped', choices=['grouped', 'affine'])
    p.add_argument('--official-bn', action='store_true', help="R's BatchNorm in train mode in phase 2, as released")
    p.add_argument('--no-bench', action='store_true', help='skip the DPConv micro-benchmark')
    return p.parse_args()

def load(name, size, tmp):
    "(train, eval) TensorSegData at `size` and a description of the source."
    path = Path(f'.devcache/{name}256.npz')
    if path.is_file():
        fold = 1 if name == 'busi' else None
        tr = TensorSegData.from_cache(path, 'train', fold, augment=True)
        ev = TensorSegData.from_cache(path, 'val' if name == 'busi' else 'test', fold)
        if name == 'sirst':
            va = TensorSegData.from_cache(path, 'val', None)
            tr = TensorSegData(torch.cat([tr.images, va.images]), torch.cat([tr.masks, va.masks]), tr.names + va.names, augment=True)
        src = f'{path} ({len(tr)} train / {len(ev)} eval)'
    else:
        root = make_example_dataset(name, Path(tmp)/name, n=64, size=256)
        cls = D.BUSIDataset if name == 'busi' else D.SIRSTDataset
        kw = dict(fold=1) if name == 'busi' else {}
        tr = TensorSegData.from_dataset(cls(root.parent, split='train', size=256, **kw), augment=True)
        ev = TensorSegData.from_dataset(cls(root.parent, split='val', size=256, **kw))
        src = f'SYNTHETIC ({path} missing)'
    def resize(d, aug):
        x = F.interpolate(d.images.float(), size=(size, size), mode='area').round().to(torch.uint8)
        # BUSI lesions are large: area-resize then > 0.5. SIRST targets are a few pixels: keep any touched pixel.
        y = (F.interpolate(d.masks.float(), size=(size, size), mode='area') > (0.5 if name == 'busi' else 0)).to(torch.uint8)
        return TensorSegData(x, y, d.names, augment=aug)
    return resize(tr, True), resize(ev, False), src

def dpconv_bench(dev):
    torch.manual_seed(0)
    dps = {i: DPConv(256, 256, 3, 64, impl=i).to(dev) for i in ('grouped', 'affine')}
    dps['affine'].load_state_dict(dps['grouped'].state_dict())
    xb, ib = torch.randn(8, 256, 32, 32, device=dev), torch.randn(8, 64, 32, 32, device=dev)
    sd = dps['grouped'].released_state_dict()
    with torch.no_grad():
        yr = dpconv_ref(xb, ib, sd, 256, 3)
        for i, m in dps.items():
            err = ((m(xb, ib) - yr).abs().max() / yr.abs().max()).item(); assert err < 1e-2, (i, err)   # TF32 convs on GPU
    print("DPConv (256,256,3,64), B=8, 32x32, fp32/TF32: median ms  [forward | forward+backward]", flush=True)
    def fb(fn):
        xx, ii = xb.clone().requires_grad_(), ib.clone().requires_grad_()
        return lambda: fn(xx, ii).sum().backward()
    for name, fn in [('ref (loop over samples)', lambda a, b: dpconv_ref(a, b, sd, 256, 3))] + list(dps.items()):
        with torch.no_grad(): f = benchmark(lambda: fn(xb, ib), 3, 20)['median_ms']
        bw = benchmark(fb(fn), 3, 20)['median_ms'] if not name.startswith('ref') else float('nan')
        print(f"  {name:24s} {f:8.3f} | {bw:8.3f}", flush=True)

@torch.no_grad()
def pooled_iou(model, data, dev):
    model.eval(); tp = un = 0.
    for s in range(0, len(data), 16):
        x, y = data.batch(torch.arange(s, min(s + 16, len(data))))
        p = (model(x.to(dev)) > 0).float(); t = y.to(dev)
        tp += (p * t).sum().item(); un += (p + t).clamp(max=1).sum().item()
    return tp / max(un, 1.)

def main():
    a = parse(); out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    dev = get_device()
    if dev.type == 'cuda': torch.backends.cuda.matmul.allow_tf32 = True; torch.backends.cudnn.allow_tf32 = True
    print(f"device {dev} {torch.cuda.get_device_name() if dev.type == 'cuda' else ''} torch {torch.__version__} size {a.size} "
          f"batch {a.batch_size} steps1<={a.steps1} ({a.sec1}s) steps2<={a.steps2} ({a.sec2}s) official_bn={a.official_bn} dpconv={a.dpconv_impl}", flush=True)
    if not a.no_bench: dpconv_bench(dev)
    base = TrainConfig(batch_size=a.batch_size, optimizer='sgd', lr=0.01, momentum=0.9, weight_decay=1e-4, schedule='poly',
                       seed=41, progress=False, verbose=False, val_every=10 ** 6)
    rows, curves, t_all = [], {}, time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.sets.split(','):
            tr, ev, src = load(name, a.size, tmp)
            spe = math.ceil(len(tr) / a.batch_size)
            print(f"\n== {name}: {src}; train {tuple(tr.images.shape)}, eval {tuple(ev.images.shape)}", flush=True)
            seed_everything(41); R = SRSReconstructionNet()
            t1 = Trainer(R, tr, ev, base.replace(epochs=math.ceil(a.steps1 / spe), max_steps=a.steps1, time_budget_s=a.sec1,
                                                 select_metric='mse', select_mode='min'),
                         step=reconstruction_step, evaluate=reconstruction_evaluate, out=out/f'{name}-phase1', device=dev)
            r1 = t1.fit(overwrite=True)
            print(f"phase 1: {r1['steps']} steps in {r1['train_s']:.0f}s, train MSE {r1['history'][0]['train_loss']:.4f} -> "
                  f"{r1['history'][-1]['train_loss']:.4f}, eval MSE {r1['best']:.4f}", flush=True)
            R = t1.model; r_before = {k: v.clone() for k, v in R.state_dict().items()}
            arms, steps2 = {}, a.steps2
            for arm, kw in (('S + DPConv (SRS)', dict(dpconv_impl=a.dpconv_impl)), ('S without DPConv', dict(use_dpconv=False))):
                seed_everything(41); S = SRSSegmentationNet(**kw)               # identical init of every shared weight
                net = SRSNet(R, S, official_bn_train=a.official_bn)
                budget = a.sec2 if not arms else None                           # the second arm gets the first arm's steps
                t2 = Trainer(net, tr, ev, base.replace(epochs=math.ceil(steps2 / spe), max_steps=steps2, time_budget_s=budget),
                             loss_fn=segmentation_loss, out=out/f"{name}-phase2-{'dpconv' if not arms else 'plain'}", device=dev)
                r2 = t2.fit(overwrite=True); steps2 = r2['steps']
                m = t2.evaluate(ev)
                arms[arm] = (r2, m, pooled_iou(net, ev, dev))
            r_changed = [k for k, v in R.state_dict().items() if not torch.equal(v, r_before[k])]
            assert not [k for k in r_changed if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))], "R's weights moved"
            if not a.official_bn: assert not r_changed, f"R's BN statistics moved: {r_changed[:5]}"
            print(f"phase 2: {steps2} steps per arm; R weights unchanged: yes; R BN stats changed: {len(r_changed)} tensors", flush=True)
            for arm, (r2, m, pooled) in arms.items():
                loss = r2['history'][-1]['train_loss']
                rows.append((name + (' (synthetic)' if 'SYNTH' in src else ''), arm, r1['steps'], r2['steps'], loss, m['iou'], m['f1'], pooled))
                print(f"  {arm:18s} last-epoch loss {loss:.4f}  IoU {m['iou']:.4f}  F1 {m['f1']:.4f}  pooled IoU {pooled:.4f}", flush=True)
            curves[name] = {'phase1': [h['train_loss'] for h in r1['history']],
                            **{arm: [h['train_loss'] for h in r2['history']] for arm, (r2, _, _) in arms.items()}}
    json.dump(curves, open(out/'srsnet_curves.json', 'w'))
    print(f"\nSRSNet ablation at {a.size}x{a.size}, batch {a.batch_size}, seed 41, R BN {'train (official)' if a.official_bn else 'eval'}; total {time.time() - t_all:.0f}s")
    print("IoU, F1: per-image, averaged over the eval images; pooled IoU: one IoU over all eval pixels; loss: mean of the last epoch")
    print(f"| {'data':20s} | {'model':18s} | {'steps R':>7s} | {'steps S':>7s} | {'loss':>6s} | {'IoU':>6s} | {'F1':>6s} | {'pooled IoU':>10s} |")
    print(f"|{'-'*22}|{'-'*20}|{'-'*9}|{'-'*9}|{'-'*8}|{'-'*8}|{'-'*8}|{'-'*12}|")
    for r in rows: print(f"| {r[0]:20s} | {r[1]:18s} | {r[2]:7d} | {r[3]:7d} | {r[4]:6.4f} | {r[5]:6.4f} | {r[6]:6.4f} | {r[7]:10.4f} |")

if __name__ == '__main__': main()
