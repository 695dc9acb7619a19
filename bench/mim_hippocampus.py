"""MambaMIM on MSD Task04 Hippocampus: pre-train on the training images, then fine-tune from the pre-trained encoder
and from scratch (same split, schedule and seed), and print per-class Dice / HD95 and wall time side by side.

  python bench/mim_hippocampus.py prepare [--data DIR]      # CPU, needs nibabel: writes .devcache/mim/{hippo,ct}.pt
  python bench/mim_hippocampus.py run --out DIR [...]       # any device; reads only the .pt caches

Everything runs through the package's recipes (`medseg_tutor.mim.recipes`), i.e. the one `Trainer`.
"""
import argparse, json, os, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without the package installed

CACHE = Path('.devcache/mim')
CT_FILES = ('spleen_2_crop_ct.nii.gz', 'example_ct_sm.nii.gz', 'thorax_ct_cropped_1p5mm.nii.gz')

def prepare(a):
    import torch
    from medseg_tutor.mim.data import read_datalist, load_volumes, save_volumes
    from medseg_tutor.mim.recipes import dataset_labels
    data = Path(a.data)
    CACHE.mkdir(parents=True, exist_ok=True)
    hip = data / 'msd_hippocampus'
    v = load_volumes(hip, 'mri', None, labels=True, verbose=True)
    v['meta']['labels'] = dataset_labels(hip)
    v['images'] = [t.half() for t in v['images']]                       # travels in float16; the recipe reads float32
    print('hippocampus:', len(v['images']), 'volumes ->', save_volumes(v, CACHE / 'hippo.pt'))
    items = [dict(image=data / 'ct_samples' / f, label=None, name=f.split('.nii')[0]) for f in CT_FILES]
    c = load_volumes(items, 'ct', 1.5)
    c['images'] = [t.half() for t in c['images']]
    print('ct:', [tuple(t.shape) for t in c['images']], '->', save_volumes(c, CACHE / 'ct.pt'))
    for f in CACHE.iterdir(): print(f'  {f}: {f.stat().st_size / 2**20:.1f} MiB')

def run(a):
    import torch
    from medseg_tutor.core import env_info
    from medseg_tutor.mim.recipes import mambamim_pretrain_runner, mambamim_finetune_runner
    from medseg_tutor.mim.finetune import evaluate_segmenter
    from medseg_tutor.mim.data import load_volume_cache, VolumeData
    from medseg_tutor.train.checkpoint import model_from_checkpoint
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    try: import matplotlib                                   # curves.png needs it; a bare GPU image may lack it
    except ImportError:
        import medseg_tutor.train.engine as E; E.plot_curves = lambda *a, **k: None; print('matplotlib missing: no curves.png')
    info = env_info(); print(json.dumps({k: info[k] for k in info if k in ('torch', 'cuda', 'gpu', 'device', 'python')}, default=str))
    common = dict(size=a.size, batch_size=a.batch_size, device=a.device, variant=a.variant, modality='mri', spacing='native',
                  seed=a.seed, progress=False, verbose=True, overwrite=True)
    rows, t_all = {}, time.time()
    # 1. pre-training on the training images of the fine-tuning split (the 20 % validation cases are left out)
    t0 = time.time()
    pt = mambamim_pretrain_runner(data_root=Path(a.hippo), out=out / 'pretrain', epochs=a.pt_epochs,
                                  time_budget_s=a.pt_s or None, val_fraction=0.2, split_seed=0, warmup_epochs=a.pt_warmup,
                                  lr=a.pt_lr, **common)
    rows['pretrain'] = dict(wall_s=time.time() - t0, steps=pt['steps'], epochs=pt['epochs'],
                            loss_first=pt['history'][0]['train_loss'], loss_last=pt['history'][-1]['train_loss'])
    print('pretrain:', rows['pretrain'], flush=True)
    # 2. CT smoke run: the CT preprocessing output (HU window, 1.5 mm) through the same recipe
    t0 = time.time()
    ct = mambamim_pretrain_runner(data_root=Path(a.ct), out=out / 'ct_smoke', max_steps=a.ct_steps, epochs=a.ct_steps,
                                  **{**common, 'modality': 'ct', 'spacing': 1.5, 'batch_size': 1})
    rows['ct_smoke'] = dict(wall_s=time.time() - t0, steps=ct['steps'], loss_first=ct['history'][0]['train_loss'],
                            loss_last=ct['history'][-1]['train_loss'])
    print('ct smoke:', rows['ct_smoke'], flush=True)
    # 3. fine-tuning: pre-trained encoder vs scratch, same everything else
    for name, init in (('pretrained', out / 'pretrain' / 'encoder.pt'), ('scratch', 'none')):
        t0 = time.time()
        ft = mambamim_finetune_runner(data_root=Path(a.hippo), out=out / f'ft_{name}', init=init, epochs=a.ft_epochs,
                                      time_budget_s=a.ft_s or None, lr=a.ft_lr, warmup_epochs=a.ft_warmup, val_fraction=0.2,
                                      split_seed=0, **common)
        wall = time.time() - t0
        model, meta = model_from_checkpoint(out / f'ft_{name}' / 'best.pt', a.device if a.device != 'auto' else 'cuda' if torch.cuda.is_available() else 'cpu')
        v = load_volume_cache(Path(a.hippo)); idx = {n: i for i, n in enumerate(v['names'])}
        sel = [idx[n] for n in meta['data']['val_names']]
        vd = VolumeData([v['images'][i].float() for i in sel], [v['labels'][i] for i in sel], [v['names'][i] for i in sel],
                        size=a.size, meta=dict(labels=meta['preprocess']['labels'], spacing_mm=[[1., 1., 1.]] * len(sel)))
        with torch.no_grad(): r = evaluate_segmenter(model, vd, meta['num_classes'])
        rows[name] = dict(wall_s=wall, steps=ft['steps'], epochs=ft['epochs'], best_epoch=ft['best_epoch'],
                          n_val=len(sel), **{k: r[k] for k in r if k != 'per_volume'})
        print(name, rows[name], flush=True)
    rows['total_s'] = time.time() - t_all
    (out / 'results.json').write_text(json.dumps(dict(args=vars(a), rows=rows), indent=1, default=str))
    hdr = '| init | Dice anterior | Dice posterior | mean Dice | HD95 anterior (mm) | HD95 posterior (mm) | epochs (steps) | best epoch | wall s |'
    lines = [hdr, '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for name in ('pretrained', 'scratch'):
        r = rows[name]
        lines.append(f"| {'MambaMIM pre-trained' if name == 'pretrained' else 'from scratch'} | {r['dice_anterior']:.4f} | "
                     f"{r['dice_posterior']:.4f} | {r['dice']:.4f} | {r['hd95_anterior']:.2f} | {r['hd95_posterior']:.2f} | "
                     f"{r['epochs']} ({r['steps']}) | {r['best_epoch']} | {r['wall_s']:.0f} |")
    p = rows['pretrain']; c = rows['ct_smoke']
    lines += ['', f"pre-training: {p['epochs']} epochs / {p['steps']} steps in {p['wall_s']:.0f} s, masked-patch loss "
              f"{p['loss_first']:.3f} -> {p['loss_last']:.3f} (epoch means); CT smoke: {c['steps']} steps in {c['wall_s']:.0f} s, "
              f"loss {c['loss_first']:.3f} -> {c['loss_last']:.3f}; total {rows['total_s']:.0f} s"]
    (out / 'table.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('prepare', help='preprocess the real data into .devcache/mim (CPU, nibabel)')
    p.add_argument('--data', default=os.environ.get('MEDSEG_TUTOR_DATA', '../shared/data'))
    r = sub.add_parser('run', help='pre-train, CT smoke run, fine-tune pre-trained vs scratch, print the table')
    r.add_argument('--out', default=os.environ.get('OUT', 'runs/mim_hippocampus'))
    r.add_argument('--device', default='auto')
    r.add_argument('--hippo', default=str(CACHE / 'hippo.pt')); r.add_argument('--ct', default=str(CACHE / 'ct.pt'))
    r.add_argument('--variant', default='small'); r.add_argument('--size', type=int, default=48)
    r.add_argument('--batch-size', type=int, default=2, help='volumes per step (each gives 4 crops)')
    r.add_argument('--seed', type=int, default=0)
    r.add_argument('--pt-s', type=float, default=0, help='time budget (0: none, run --pt-epochs)'); r.add_argument('--pt-epochs', type=int, default=30)
    r.add_argument('--pt-warmup', type=float, default=4); r.add_argument('--pt-lr', type=float, default=1e-4)
    r.add_argument('--ct-steps', type=int, default=4)
    r.add_argument('--ft-s', type=float, default=0, help='time budget (0: none; a budget makes the two schedules differ)')
    r.add_argument('--ft-epochs', type=int, default=15)
    r.add_argument('--ft-warmup', type=float, default=1); r.add_argument('--ft-lr', type=float, default=1e-4)
    a = ap.parse_args(argv)
    (prepare if a.cmd == 'prepare' else run)(a)

if __name__ == '__main__': main()
