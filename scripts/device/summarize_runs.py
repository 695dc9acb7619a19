#!/usr/bin/env python
"""One line per training run in DIR, then the mean over runs: the device scripts' shared summary.

  python scripts/device/summarize_runs.py DIR NAME [NAME ...] [--published "text"] [--table FILE]

A run NAME needs DIR/NAME/log.csv (written by the engine) and DIR/NAME_eval.json (`cli.py eval --json`);
DIR/NAME_wall.txt (seconds, start-up included), if there, adds the wall time.
"""
import sys, json, argparse, statistics
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from medseg_tutor.train.engine import read_csv

def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument('dir'); p.add_argument('names', nargs='+')
    p.add_argument('--published', default='', help='text printed after the mean, e.g. the paper figures')
    p.add_argument('--table', help='a markdown file to print at the end (throughput table)')
    a = p.parse_args(argv)
    r, ious, f1s = Path(a.dir), [], []
    for name in a.names:
        try:
            rows, ev = read_csv(r/name/'log.csv'), json.loads((r/f'{name}_eval.json').read_text())
        except (OSError, ValueError) as e: print(f'{name}: no result ({e})'); continue
        wall = r/f'{name}_wall.txt'
        best = max(rows, key=lambda x: x['val_iou'])
        ious.append(100 * ev['iou']); f1s.append(100 * ev['f1'])
        print(f"{name}: {len(rows)} epochs" + (f", {int(wall.read_text())} s wall (start-up, compile, validation included)" if wall.exists() else '')
              + f", train {sum(x['epoch_s'] for x in rows):.0f} s, median {statistics.median(x['img_s'] for x in rows[2:] or rows):.0f} img/s; "
              f"best epoch {int(best['epoch'])}: IoU {100*ev['iou']:.2f} ± {100*ev['iou_std']:.2f}, F1 {100*ev['f1']:.2f} ± {100*ev['f1_std']:.2f}, "
              f"sens {100*ev.get('sensitivity', float('nan')):.2f}, prec {100*ev.get('precision', float('nan')):.2f}, "
              f"HD95 {ev.get('hd95', float('nan')):.1f} px (n={ev['n']}); last-epoch val IoU {100*rows[-1]['val_iou']:.2f}")
    if len(ious) > 1:
        print(f"mean over {len(ious)} runs: IoU {statistics.mean(ious):.2f} ± {statistics.stdev(ious):.2f}, "
              f"F1 {statistics.mean(f1s):.2f} ± {statistics.stdev(f1s):.2f} {a.published}")
    if a.table: t = Path(a.table); print(t.read_text() if t.exists() else 'no throughput table')

if __name__ == '__main__': main()
