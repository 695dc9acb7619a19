"""The attention gates of DPConv and SRSNet (global max over H, W or over C) under torch.compile + bf16 give finite
gradients, close to eager. With `amax` they did not: amax's backward divides by the number of elements equal to the max,
and Inductor compared a recomputed fp32 feature with the bf16-rounded max, found none, and divided 0 by 0 (NaN in every
gradient of S from the first phase-2 step, bench_srsnet `ro+chk:RS`, H200, 2026-11-30; pytorch/pytorch#195214)."""
import pytest, torch, torch._dynamo
from medseg_tutor.blocks.dpconv import ChannelAttention, SpatialAttention, global_max
from medseg_tutor.nets.srsnet import ECAGate

@pytest.mark.parametrize('name', ['ChannelAttention', 'SpatialAttention', 'ECAGate'])
def test_gate_bf16_compiled_gradients_finite(name):
    torch.set_num_threads(1); torch._dynamo.reset()
    torch.manual_seed(0)
    gate = {'ChannelAttention': lambda: ChannelAttention(16), 'SpatialAttention': lambda: SpatialAttention(7),
            'ECAGate': lambda: ECAGate(3)}[name]().to(torch.bfloat16)
    f = lambda t: gate(t * 1.5 + 0.1)            # a pointwise op before the max: Inductor fuses it and recomputes it
    x = torch.randn(2, 16, 8, 8, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn_like(f(x).float())
    grad = lambda fn: torch.autograd.grad((fn(x).float() * w).sum(), [x, *gate.parameters()])
    eager, compiled = grad(f), grad(torch.compile(f))
    torch._dynamo.reset()
    for e, c in zip(eager, compiled):
        assert c.isfinite().all(), f'{name}: non-finite compiled gradient'
        assert (c.float() - e.float()).norm() <= 0.05 * e.float().norm() + 1e-3, (name, (c.float() - e.float()).norm(), e.float().norm())

def test_global_max_gives_a_tie_to_one_element():
    t = torch.zeros(2, 3, 4, 4, requires_grad=True)
    (g,) = torch.autograd.grad(global_max(t).sum(), t)
    assert global_max(t).shape == (2, 3) and g.sum() == 6 and g.max() == 1
    x = torch.randn(2, 3, 5, 4).contiguous(memory_format=torch.channels_last)
    assert torch.equal(global_max(x), torch.nn.functional.adaptive_max_pool2d(x, 1).flatten(1))
