"""Selective scan on the GPU: try Triton launch configurations (tile length, block/warps of the forward and backward
kernels) at the long shape (8, 1536, 4096, 16), keep the fastest one whose result matches, then run bench/bench_scan.py
with it (fp32 at both shapes, bf16 at the long shape). The Python that scripts/device/scan.sh used to hold in a heredoc.

    python bench/scan_tune_device.py            # needs CUDA and Triton
"""
import argparse, sys, itertools
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
import medseg_tutor.ssm.scan as S
from bench_scan import inputs, run_one, main as bench_main

def main():
    argparse.ArgumentParser(description=__doc__.split('\n\n')[0]).parse_args()
    t = inputs(8, 1536, 4096, 16, 'cuda', torch.float32)
    args = [t[k].clone().requires_grad_() for k in ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')]
    def fb():
        out = S.selective_scan(*args, delta_softplus=True, impl='triton'); out.backward(torch.ones_like(out))
        return out.detach(), [a.grad.clone() for a in args]
    out0, g0 = fb(); [setattr(a, 'grad', None) for a in args]
    best = {}
    for which, cfgs in (('fwd', [(2, 4), (4, 2), (4, 4), (8, 4)]), ('bwd', [(2, 4), (4, 2), (4, 4), (4, 8)])):
        for TL in (32, 64):
            for cfg in cfgs:
                S.TRITON_TL = TL; setattr(S, 'TRITON_' + which.upper(), cfg)
                try:
                    out, g = fb(); [setattr(a, 'grad', None) for a in args]
                    err = max([(out - out0).abs().max().item()] + [((x - y).abs().max() / y.abs().max()).item() for x, y in zip(g, g0)])
                    r = run_one('triton', t, 'cuda', 5)
                    ms = r['fwd'] if which == 'fwd' else r['fwd+bwd'] - r['fwd']
                    print(f"triton {which} TL={TL} BD,warps={cfg}: {which} {ms:.3f} ms (fwd+bwd {r['fwd+bwd']:.3f})  max rel diff {err:.1e}")
                    if err < 1e-3 and ms < best.get(which, (1e9,))[0]: best[which] = (ms, TL, cfg)
                except Exception as e:
                    print(f"triton {which} TL={TL} {cfg}: {type(e).__name__}: {str(e)[:150]}")
            S.TRITON_TL = 32; setattr(S, 'TRITON_' + which.upper(), (4, 4))
    print('best', best)
    # TL is shared by both kernels: take the TL of the best backward, and the best forward cfg at that TL if measured
    S.TRITON_TL, S.TRITON_BWD = best['bwd'][1], best['bwd'][2]
    if best['fwd'][1] == S.TRITON_TL: S.TRITON_FWD = best['fwd'][2]
    print(f"benchmark with TRITON_TL={S.TRITON_TL} TRITON_FWD={S.TRITON_FWD} TRITON_BWD={S.TRITON_BWD}")
    bench_main(['--device', 'cuda'])
    bench_main(['--device', 'cuda', '--dtype', 'bfloat16', '--shapes', '8,1536,4096,16', '--impls', 'cuda,triton,chunked'])

if __name__ == '__main__': main()
