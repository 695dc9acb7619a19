#!/usr/bin/env python
"""Write small device caches of the real data: `.devcache/busi256.npz` and `.devcache/sirst256.npz`.

Each file holds every image and mask of the set resized to SIZE x SIZE, ready to be put on a GPU once and trained on
without a DataLoader, written in the package's one cache format (`medseg_tutor.data.tensors.save_cache`; read with
`load_cache` / `TensorSegData.from_cache(path, split, fold)`):

  images  uint8 (N, 1, S, S)   grey (BUSI: 764/780 are grey; the 16 RGB ones carry coloured calipers and are converted
                               with PIL 'L'; SIRST: IR images, RGB/RGBA/P converted to 'L'); the model input repeats the
                               channel to 3 on the device
  masks   binary (N, 1, S, S)  bit-packed by save_cache, 1 = lesion/target
  names   str (N,), orig_hw (N, 2) each image's size before resizing, meta (source, resize rule)
  BUSI:   train_idx_{1,2,3}, val_idx_{1,2,3}    rows of the official CMUNet / MobileUtr split lists
  SIRST:  train_idx, val_idx, test_idx          rows of idx_427
Image resize: bilinear (PIL). Mask resize: bilinear of the {0,255} mask, then > 127 (a mask whose size differs from its
image, SIRST Misc_111, is resized to the image grid the same way). Only images listed in a split are stored for BUSI
(the 647 benign + malignant; normal images are in no split).
The data stay outside the package: .devcache/ is git-ignored; never commit or ship it.

Usage: python tools/make_devcache.py [--data-root /work/shared/data] [--out .devcache] [--size 256]
"""
import argparse, os, sys, time
from pathlib import Path
import numpy as np
from PIL import Image
from medseg_tutor.data.tensors import save_cache

def _load(img_path, mask_path, size):
    im = Image.open(img_path)
    hw = (im.height, im.width)
    im = im.convert('RGB').convert('L') if im.mode not in ('L',) else im
    m = Image.open(mask_path).convert('L')
    im = np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    m = np.asarray(m.resize((size, size), Image.BILINEAR), dtype=np.uint8) > 127
    return im[None], m[None].astype(np.uint8), hw

def _read_list(p): return [l.strip() for l in open(p) if l.strip()]

def busi(root, size):
    root = Path(root)/'busi'
    splits = {f'{k}_idx_{f}': _read_list(root/'splits'/f'busi_{k}{f}.txt') for f in (1, 2, 3) for k in ('train', 'val')}
    names = sorted(set(n for v in splits.values() for n in v))
    pos = {n: i for i, n in enumerate(names)}
    ims, ms, hw = zip(*[_load(root/'images'/f'{n}.png', root/'masks'/'0'/f'{n}.png', size) for n in names])
    return dict(images=np.stack(ims), masks=np.stack(ms), names=names, orig_hw=list(hw),
                splits={k: [pos[n] for n in v] for k, v in splits.items()})

def sirst(root, size):
    root = Path(root)/'sirst'
    splits = {f'{k}_idx': _read_list(root/'idx_427'/f'{k}.txt') for k in ('train', 'val', 'test')}
    names = sorted(set(n for v in splits.values() for n in v))
    pos = {n: i for i, n in enumerate(names)}
    ims, ms, hw = zip(*[_load(root/'images'/f'{n}.png', root/'masks'/f'{n}_pixels0.png', size) for n in names])
    return dict(images=np.stack(ims), masks=np.stack(ms), names=names, orig_hw=list(hw),
                splits={k: [pos[n] for n in v] for k, v in splits.items()})

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-root', default=os.environ.get('MEDSEG_TUTOR_DATA', str(Path(__file__).resolve().parents[2]/'shared'/'data')))
    p.add_argument('--out', default=str(Path(__file__).resolve().parents[1]/'.devcache'))
    p.add_argument('--size', type=int, default=256)
    a = p.parse_args(argv)
    if not Path(a.data_root).is_dir(): sys.exit(f"make_devcache: data root '{a.data_root}' does not exist (pass --data-root)")
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, fn in (('busi', busi), ('sirst', sirst)):
        t = time.time(); d = fn(a.data_root, a.size)
        f = save_cache(out/f'{name}{a.size}.npz', d['images'], d['masks'], names=d['names'], splits=d['splits'],
                       orig_hw=d['orig_hw'], meta=dict(source=name, size=a.size, resize='bilinear; masks bilinear > 127'))
        total += f.stat().st_size
        print(f"{f}: {len(d['names'])} images {tuple(d['images'].shape)}, {f.stat().st_size/2**20:.1f} MiB, {time.time()-t:.0f} s")
    print(f"total {total/2**20:.1f} MiB")

if __name__ == '__main__': main()
