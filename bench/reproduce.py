#!/usr/bin/env python
"""Reproduce a paper table: every run (recipe x split x seed), several runs per GPU, resumable; writes OUT/table.md.

  python bench/reproduce.py --list
  python bench/reproduce.py busi-mobileutr --data-root .devcache/busi256.npz --per-gpu 3 \\
      --train-args='--amp bf16 --channels-last' [--deadline 380] [--dry-run]

The same arguments as `medseg-tutor reproduce` (medseg_tutor.train.reproduce.add_reproduce_args); this script runs from a
checkout without installing the package.
"""
import sys, argparse
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medseg_tutor.core import MedsegError
from medseg_tutor.train.reproduce import add_reproduce_args, reproduce_main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='bench/reproduce.py', description=__doc__.split('\n')[0])
    add_reproduce_args(p)
    ns = p.parse_args(argv)
    try: return reproduce_main(ns)
    except MedsegError as e:
        print(f"reproduce: error: {e}", file=sys.stderr); return 2

if __name__ == '__main__': sys.exit(main())
