"""Plot the input-scaling experiment of issue 18: val IoU per epoch, 'imagenet' (this package) vs 'released' (ImageNet
standardisation divided by 255 again, as the released Mobile U-ViT loader does), 3 splits x 2 seeds each.
Reads bench/figures/h200x2_busi_released_norm_logs.csv (from `scripts/device/tables.sh`), writes the PNG beside it and
prints the paired table (best val IoU over the first N epochs that every run reached)."""
import csv, statistics as st
from collections import defaultdict
from pathlib import Path
import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt

src = Path(__file__).parent/'figures'/'h200x2_busi_released_norm_logs.csv'
runs = defaultdict(list)
for r in csv.DictReader(open(src)): runs[(r['arm'], int(r['split']), int(r['seed']))].append((int(r['epoch']), 100 * float(r['val_iou'])))
n = min(len(v) for v in runs.values())
keys = sorted({(s, sd) for _, s, sd in runs})
print(f"best val IoU over epochs 1-{n} (% , per image, 195 val images)\n\n| split | seed | imagenet | released | released - imagenet |\n|---:|---:|---:|---:|---:|")
diffs = []
for s, sd in keys:
    a, b = (max(v for _, v in runs[(arm, s, sd)][:n]) for arm in ('imagenet', 'released'))
    diffs.append(b - a); print(f"| {s} | {sd} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")
print(f"| mean ± std | | | | {st.mean(diffs):+.2f} ± {st.stdev(diffs):.2f} |")
fig, axs = plt.subplots(1, 2, figsize=(11, 3.8))
for arm, col in (('imagenet', 'C0'), ('released', 'C3')):
    curves = [[v for _, v in runs[(arm, s, sd)][:n]] for s, sd in keys]
    axs[0].plot(range(1, n + 1), [st.mean(c) for c in zip(*curves)], color=col, label=f"{arm} (mean of 6 runs)")
axs[0].set(xlabel='epoch', ylabel='validation IoU (%)', title='input scaling: mean over 3 splits x 2 seeds'); axs[0].legend()
axs[1].bar(range(len(diffs)), diffs, color=['C2' if d > 0 else 'C1' for d in diffs]); axs[1].axhline(0, color='k', lw=0.8)
axs[1].set_xticks(range(len(diffs)), [f"s{s}/{sd}" for s, sd in keys])
axs[1].set(ylabel='released - imagenet (IoU points)', title=f'paired difference, best over epochs 1-{n}')
fig.tight_layout(); fig.savefig(src.with_name('h200x2_busi_released_norm.png'), dpi=100)
