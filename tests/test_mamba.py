"Mamba block: mamba_ssm-compatible parameters and init, causal conv, forward == oracle for every impl, step == forward."
import math
import pytest
import torch
import torch.nn.functional as F
from medseg_tutor.core import ShapeError, assert_close
from medseg_tutor.ssm.mamba import Mamba, causal_conv1d_ref
from medseg_tutor.ssm.scan import cuda_kernel_available

torch.set_num_threads(1)


def test_parameters_match_mamba_ssm_layout():
    m = Mamba(384)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {'A_log': (768, 16), 'D': (768,), 'in_proj.weight': (1536, 384), 'conv1d.weight': (768, 1, 4),
                      'conv1d.bias': (768,), 'x_proj.weight': (56, 768), 'dt_proj.weight': (768, 24),
                      'dt_proj.bias': (768,), 'out_proj.weight': (384, 768)}
    assert sum(v.numel() for v in m.parameters()) == 963_840
    assert m.A_log.dtype == m.D.dtype == torch.float32
    assert m.A_log._no_weight_decay and m.D._no_weight_decay and m.dt_proj.bias._no_reinit


def test_init():
    torch.manual_seed(0)
    m = Mamba(64, dt_min=0.002, dt_max=0.05)
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.002 * (1 - 1e-4) and dt.max() <= 0.05 * (1 + 1e-4)
    s = m.dt_rank ** -0.5
    assert m.dt_proj.weight.abs().max() <= s and m.dt_proj.weight.abs().max() > 0.5 * s
    assert torch.allclose(m.A_log, torch.log(torch.arange(1., 17.)).repeat(128, 1))
    assert torch.equal(m.D, torch.ones(128))
    m = Mamba(64, dt_init='constant', dt_scale=2.0)
    assert torch.allclose(m.dt_proj.weight, torch.full_like(m.dt_proj.weight, 2 * 4 ** -0.5))
    assert m.dt_rank == 4 and Mamba(64, dt_rank=7).dt_rank == 7 and Mamba(17).dt_rank == 2


def test_causal_conv_matches_padded_conv():
    x, w, b = torch.randn(2, 5, 12), torch.randn(5, 4), torch.randn(5)
    conv = torch.nn.Conv1d(5, 5, 4, groups=5, padding=3)
    with torch.no_grad(): conv.weight.copy_(w[:, None]); conv.bias.copy_(b)
    assert torch.allclose(causal_conv1d_ref(x, w, b, 'silu'), F.silu(conv(x)[..., :12]), atol=1e-6)


@pytest.mark.parametrize('impl', ['parallel', 'chunked', 'auto'])
def test_forward_matches_ref(impl):
    torch.manual_seed(0)
    m = Mamba(24, d_state=8).double()
    h = torch.randn(2, 33, 24, dtype=torch.float64, requires_grad=True)
    y_ref = m(h, impl='ref')
    y = m(h, impl=impl)
    assert y.shape == h.shape
    assert_close(y, y_ref, impl)
    g_ref = torch.autograd.grad(y_ref.sum(), [h] + list(m.parameters()))
    g = torch.autograd.grad(y.sum(), [h] + list(m.parameters()))
    for a, b in zip(g, g_ref): assert_close(a, b, f'{impl} grad')


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_step_equals_forward(dtype):
    torch.manual_seed(1)
    m = Mamba(16, d_state=4, d_conv=3).to(dtype)
    h = torch.randn(3, 20, 16, dtype=dtype)
    y = m(h)
    cs, ss = m.init_state(3)
    outs = []
    for t in range(20):
        o, cs, ss = m.step(h[:, t:t + 1], cs, ss)
        outs.append(o)
    assert_close(torch.cat(outs, 1), y, 'step vs forward', rtol=1e-5 if dtype == torch.float32 else None,
                 atol=1e-5 if dtype == torch.float32 else None)


def test_causal_block():
    torch.manual_seed(2)
    m = Mamba(16).double()
    h = torch.randn(1, 30, 16, dtype=torch.float64)
    h2 = h.clone(); h2[:, 17:] += 1
    y, y2 = m(h), m(h2)
    assert torch.allclose(y[:, :17], y2[:, :17], rtol=1e-13, atol=1e-13) and not torch.allclose(y[:, 17:], y2[:, 17:])


def test_shape_errors():
    m = Mamba(16)
    with pytest.raises(ShapeError, match=r'hidden_states .* has shape \(2, 5, 8\)'):
        m(torch.randn(2, 5, 8))
    with pytest.raises(ShapeError, match=r'has shape \(2, 5\)'):
        m(torch.randn(2, 5))
    cs, ss = m.init_state(2)
    with pytest.raises(ShapeError):
        m.step(torch.randn(2, 3, 16), cs, ss)


@pytest.mark.skipif(not cuda_kernel_available(), reason='needs a CUDA GPU and mamba-ssm')
def test_loads_mamba_ssm_state_dict():
    from mamba_ssm import Mamba as MambaSSM
    from medseg_tutor.core import no_tf32
    with no_tf32():
        torch.manual_seed(0); theirs = MambaSSM(64).cuda()
        torch.manual_seed(0); ours = Mamba(64).cuda()
        for (k, a), (k2, b) in zip(theirs.state_dict().items(), ours.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k
        ours = Mamba(64).cuda()
        ours.load_state_dict(theirs.state_dict())
        h = torch.randn(2, 216, 64, device='cuda')
        y = theirs(h)
        for impl in ('cuda', 'triton', 'chunked', 'parallel'):
            assert_close(ours(h, impl=impl), y, f'Mamba({impl}) vs mamba_ssm.Mamba', rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (Triton)')
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_triton_block_gradients_match_chunked(dtype):
    "The whole block through our Triton kernels: output and every parameter gradient equal the chunked PyTorch path."
    torch.manual_seed(3)
    m = Mamba(64).cuda()
    h = torch.randn(2, 300, 64, device='cuda', requires_grad=True)
    ac = dict(device_type='cuda', dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    res = {}
    for impl in ('triton', 'chunked'):
        with torch.autocast(**ac): y = m(h, impl=impl)
        res[impl] = (y.float(), torch.autograd.grad(y.float().square().sum(), [h] + list(m.parameters())))
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    assert_close(res['triton'][0], res['chunked'][0], 'out', rtol=tol, atol=tol)
    for (k, _), a, b in zip([('h', None)] + list(m.named_parameters()), res['triton'][1], res['chunked'][1]):
        assert_close(a, b, f'grad {k}', rtol=tol, atol=tol * b.abs().max().item())
