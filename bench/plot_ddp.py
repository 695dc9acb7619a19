"""Validation IoU per epoch of two runs' log.csv side by side (1 GPU vs DDP), with their per-epoch training speed.

  python bench/plot_ddp.py ONE_GPU/log.csv DDP/log.csv --out bench/figures/h200_ddp_vs_1gpu.png
"""
import sys, argparse
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from medseg_tutor.train.engine import read_csv

def main(argv=None):
    p = argparse.ArgumentParser(); p.add_argument('one'); p.add_argument('ddp'); p.add_argument('--out', required=True)
    p.add_argument('--labels', nargs=2, default=['1 GPU, batch 8', '2 GPUs (DDP), 2 x 4'])
    a = p.parse_args(argv)
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
    for path, lab in zip((a.one, a.ddp), a.labels):
        h = read_csv(path); ep = [r['epoch'] for r in h]
        ax[0].plot(ep, [r['val_iou'] for r in h], label=f"{lab} (best {max(r['val_iou'] for r in h):.3f})")
        ax[1].plot(ep[1:], [r['img_s'] for r in h][1:], label=lab)
    ax[0].set(xlabel='epoch', ylabel='val IoU (per image, mean)', ylim=(0, 1), title='same recipe, same global batch')
    ax[1].set(xlabel='epoch', ylabel='training images/s', title='speed (epoch 1 = compilation, left out)')
    for x in ax: x.legend(); x.grid(alpha=.3)
    fig.tight_layout(); fig.savefig(a.out, dpi=110); print(a.out)

if __name__ == '__main__': main()
