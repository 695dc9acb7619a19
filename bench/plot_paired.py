"""Two arms of the same runs (3 splits x seeds), paired: best validation IoU per run (and F1 at that epoch), the paired
differences, and a figure (mean curve per arm; one bar per pair). Reads a CSV with columns arm, split, seed, epoch,
val_iou, val_f1 (fractions), as in bench/figures/*_logs.csv; uses the first N epochs that every run reached (so arms
stopped at different epochs are compared at the same one). --iou-column picks another IoU column (e.g. val_iou_pooled).

    python bench/plot_paired.py bench/figures/h200x2_busi_released_augment_logs.csv --arms dihedral,released
    python bench/plot_paired.py bench/figures/h200x2_busi_released_norm_logs.csv --arms imagenet,released
    python bench/plot_paired.py bench/figures/h200x2_sirst_srsnet_logs.csv --arms plain,dpconv --iou-column val_iou_pooled
"""
import argparse, csv, statistics as st
from collections import defaultdict
from pathlib import Path
import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('csv', type=Path); ap.add_argument('--arms', required=True, help='A,B: the table shows B - A')
    ap.add_argument('--iou-column', default='val_iou', help='the IoU column to select and compare on (default: val_iou, per image)')
    ap.add_argument('--title', default=None); ap.add_argument('--out', type=Path, default=None, help='PNG (default: the CSV name without _logs)')
    a = ap.parse_args(argv)
    A, B = a.arms.split(',')
    runs = defaultdict(list)
    for r in csv.DictReader(open(a.csv)):
        runs[(r['arm'], int(r['split']), int(r['seed']))].append((int(r['epoch']), 100 * float(r[a.iou_column]), 100 * float(r.get('val_f1') or 'nan')))
    missing = sorted(k for k in runs if k[0] not in (A, B))
    if missing: raise SystemExit(f"arms in the CSV other than {A}, {B}: {sorted({k[0] for k in missing})}")
    keys = sorted({(s, sd) for _, s, sd in runs})
    lacking = [(arm, s, sd) for s, sd in keys for arm in (A, B) if (arm, s, sd) not in runs]
    if lacking: raise SystemExit(f"unpaired runs: {lacking} have no log")
    n = min(len(v) for v in runs.values())
    def best(arm, s, sd):
        e, iou, f1 = max(runs[(arm, s, sd)][:n], key=lambda t: t[1]); return iou, f1, e
    print(f"best {a.iou_column} over epochs 1-{n} (%), F1 (per image) at that epoch\n")
    print(f"| split | seed | {A} IoU / F1 | {B} IoU / F1 | {B} − {A} IoU | {B} − {A} F1 |\n|---:|---:|---:|---:|---:|---:|")
    di, df, ma, mb = [], [], [], []
    for s, sd in keys:
        (ia, fa, _), (ib, fb, _) = best(A, s, sd), best(B, s, sd)
        di.append(ib - ia); df.append(fb - fa); ma.append((ia, fa)); mb.append((ib, fb))
        print(f"| {s} | {sd} | {ia:.2f} / {fa:.2f} | {ib:.2f} / {fb:.2f} | {ib - ia:+.2f} | {fb - fa:+.2f} |")
    m = lambda xs, i: f"{st.mean(x[i] for x in xs):.2f} ± {st.stdev(x[i] for x in xs):.2f}"
    print(f"| mean ± std over the {len(keys)} runs | | {m(ma, 0)} / {m(ma, 1)} | {m(mb, 0)} / {m(mb, 1)} | "
          f"**{st.mean(di):+.2f} ± {st.stdev(di):.2f}** | **{st.mean(df):+.2f} ± {st.stdev(df):.2f}** |")
    print(f"\n{sum(d > 0 for d in di)} of {len(di)} IoU differences and {sum(d > 0 for d in df)} of {len(df)} F1 differences are > 0")
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.8))
    for arm, col in ((A, 'C0'), (B, 'C3')):
        curves = [[v for _, v, _ in runs[(arm, s, sd)][:n]] for s, sd in keys]
        axs[0].plot(range(1, n + 1), [st.mean(c) for c in zip(*curves)], color=col, lw=1, label=f"{arm} (mean of {len(keys)} runs)")
    axs[0].set(xlabel='epoch', ylabel=f'{a.iou_column} (%)', title=a.title or f'{A} vs {B}: mean over splits x seeds'); axs[0].legend()
    axs[0].set_ylim(max(0, min(axs[0].get_ylim()[1] - 25, 50)), None)
    axs[1].bar(range(len(di)), di, color=['C2' if d > 0 else 'C1' for d in di]); axs[1].axhline(0, color='k', lw=0.8)
    one_split = len({s for s, _ in keys}) == 1                  # e.g. SIRST: one split, seeds only
    axs[1].set_xticks(range(len(di)), [f"seed {sd}" if one_split else f"s{s}/{sd}" for s, sd in keys])
    axs[1].set(xlabel='seed' if one_split else 'split / seed', ylabel=f'{B} − {A} (IoU points)', title=f'paired difference of the best IoU, epochs 1-{n}')
    fig.tight_layout()
    out = a.out or a.csv.with_name(a.csv.name.replace('_logs.csv', '.png'))
    fig.savefig(out, dpi=100); print(f"\nfigure: {out}")

if __name__ == '__main__': main()
