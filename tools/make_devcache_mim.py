#!/usr/bin/env python
"""Write `.devcache/adrenal64.npz`: AdrenalMNIST3D volumes (MedMNIST v2, CC BY 4.0) for the MambaMIM device run.

The volumes are binary (0/255) 64³ adrenal shapes, so they are stored bit-packed:

  bits    uint8 (N, 64*64*64/8)   np.packbits over each flattened volume (C order), 1 = foreground
  labels  uint8 (N,)              class label (not used by pre-training)
  split   uint8 (N,)              0 = train, 1 = val, 2 = test
  shape   int64 (3,)              (64, 64, 64)

Load: np.unpackbits(bits, axis=1).reshape(-1, 64, 64, 64). The data stay outside the package: .devcache/ is
git-ignored; never commit or ship it.

Usage: python tools/make_devcache_mim.py [--data-root /work/shared/data] [--out .devcache] [--max N]
"""
import argparse, os
from pathlib import Path
import numpy as np

def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--data-root', default=os.environ.get('MEDSEG_TUTOR_DATA', str(Path(__file__).resolve().parents[2] / 'shared' / 'data')))
    ap.add_argument('--out', default=str(Path(__file__).resolve().parents[1] / '.devcache'))
    ap.add_argument('--max', type=int, default=0, help='keep at most this many volumes (0 = all)')
    a = ap.parse_args(argv)
    src = Path(a.data_root) / 'medmnist' / 'adrenalmnist3d_64.npz'
    if not src.exists(): raise SystemExit(f"not found: {src} (pass --data-root or set MEDSEG_TUTOR_DATA)")
    d = np.load(src)
    vols, labels, split = [], [], []
    for i, s in enumerate(('train', 'val', 'test')):
        v = d[f'{s}_images']
        if not set(np.unique(v)) <= {0, 255}: raise SystemExit(f"{src}: {s}_images is not binary 0/255")
        vols.append(v > 127); labels.append(d[f'{s}_labels'].reshape(-1)); split.append(np.full(len(v), i, np.uint8))
    vols, labels, split = np.concatenate(vols), np.concatenate(labels).astype(np.uint8), np.concatenate(split)
    if a.max: vols, labels, split = vols[:a.max], labels[:a.max], split[:a.max]
    bits = np.packbits(vols.reshape(len(vols), -1), axis=1)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / 'adrenal64.npz', bits=bits, labels=labels, split=split, shape=np.array(vols.shape[1:]))
    print(f"wrote {out / 'adrenal64.npz'}: {len(vols)} volumes, {os.path.getsize(out / 'adrenal64.npz') / 2**20:.1f} MiB")

if __name__ == '__main__': main()
