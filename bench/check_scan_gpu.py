"""GPU cross-check of the selective scan: our oracle, mamba-ssm's own `selective_scan_ref`, mamba-ssm's CUDA kernel and
our Triton / chunked paths, for every B/C layout and dtype; prints max differences of out and last_state (no asserts:
the asserting versions are in tests/test_scan.py)."""
import torch
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without the package installed
from medseg_tutor.ssm.scan import selective_scan, selective_scan_ref
from mamba_ssm.ops.selective_scan_interface import selective_scan_fn, selective_scan_ref as mamba_ref

torch.manual_seed(0)
b, d, L, N, G = 2, 64, 700, 16, 2
for dtype in (torch.float32, torch.bfloat16):
    for kind in ('var', 'const', 'group'):
        shp = dict(var=(b, N, L), const=(d, N), group=(b, G, N, L))[kind]
        wt = dtype if kind != 'const' else torch.float32
        u, dl, z = [torch.randn(b, d, L, device='cuda').to(dtype) for _ in range(3)]
        A = -torch.rand(d, N, device='cuda') * 2 - 0.1
        B, C = torch.randn(*shp, device='cuda').to(wt), torch.randn(*shp, device='cuda').to(wt)
        D, bias = torch.randn(d, device='cuda'), torch.randn(d, device='cuda') * 0.5
        a = (u, dl, A, B, C, D, z, bias)
        res = {'ours_ref': selective_scan_ref(*a, delta_softplus=True, return_last_state=True),
               'mamba_ref': mamba_ref(*a, delta_softplus=True, return_last_state=True),
               'mamba_cuda': selective_scan_fn(*a, delta_softplus=True, return_last_state=True),
               'chunked': selective_scan(*a, delta_softplus=True, return_last_state=True, impl='chunked')}
        if kind != 'const':
            res['triton'] = selective_scan(*a, delta_softplus=True, return_last_state=True, impl='triton')
        o0, s0 = res['ours_ref']
        line = []
        for k, (o, s) in res.items():
            line.append(f"{k}: out {(o.float() - o0.float()).abs().max().item():.2e} last {(s.float() - s0.float()).abs().max().item():.2e}")
        print(f"{str(dtype)[6:]:8s} B,C {kind:5s} | " + ' | '.join(line[1:]) + f"   (|out| max {o0.abs().max().item():.1f}, |last| max {s0.abs().max().item():.1f})")
