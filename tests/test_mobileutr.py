"MobileUtr: shapes, exact parameter counts, the block identities, input errors, fast == released path, determinism."
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from medseg_tutor.core import ShapeError, MedsegError, assert_close
from medseg_tutor.blocks.convutr import ConvUtr, ConvUtrUnit, convutr_unit_ref
from medseg_tutor.blocks.lgl import (LocalAgg, GlobalSparseAttn, LGLBlock, SparseTransformer, attention_ref,
                                     local_prop, set_fast_path)
from medseg_tutor.nets.mobileutr import (MobileUtr, mobileutr, mobileutr_l, EXPECTED_PARAMS, param_table,
                                         load_released_state_dict, adaptive_lgl_kernel, target_diameters, fold_batchnorm)
from medseg_tutor.stats import model_stats

torch.set_num_threads(1)

def n_params(m): return sum(p.numel() for p in m.parameters())

@pytest.fixture(scope='module')
def net():
    torch.manual_seed(0)
    return mobileutr().eval()

@pytest.mark.parametrize('H,W', [(256, 256), (224, 320)])
def test_shapes(net, H, W):
    with torch.no_grad(): assert net(torch.randn(1, 3, H, W)).shape == (1, 1, H, W)

def test_shapes_l_and_classes():
    with torch.no_grad(): y = mobileutr_l(num_classes=3).eval()(torch.randn(2, 3, 32, 64))
    assert y.shape == (2, 3, 32, 64) and y.is_contiguous()

def test_param_counts():
    assert n_params(mobileutr()) == 1_390_305
    assert n_params(mobileutr_l()) == 6_209_217
    assert param_table(mobileutr()) == EXPECTED_PARAMS['mobileutr']
    assert param_table(mobileutr_l()) == EXPECTED_PARAMS['mobileutr_l']
    la, sa = LocalAgg(64), SparseTransformer(64, 4, 2)
    assert (n_params(la), n_params(sa), n_params(LGLBlock(128, 4, 1))) == (24_000, 51_072, 199_552)
    assert [n_params(m) for m in (sa.pos, sa.attn.qkv, sa.attn.proj, sa.attn.local_prop, sa.mlp)] == [640, 12_480, 4_160, 320, 33_088]
    assert n_params(ConvUtrUnit(32, 7)) == 10_336 and n_params(ConvUtr(32, 64, 3, 7)) == 49_632

def test_macs():
    s = model_stats(mobileutr(), (1, 3, 256, 256))
    assert abs(s['conv'] + s['linear'] - 2.416e9) < 0.005e9 and abs(s['attention'] - 0.83e9) < 0.005e9
    assert s['per_module']['vit']['attention'] == 3 * 2 * 1024 * 1024 * 128

def test_sampler_is_strided_slice():
    x = torch.randn(2, 8, 12, 16)
    gsa = GlobalSparseAttn(8, 2, 2)
    assert torch.equal(gsa.sample(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), x[..., ::2, ::2])
    assert torch.equal(nn.AvgPool2d(1, 2)(x), x[..., ::2, ::2])

def test_local_prop_formula():
    conv = nn.ConvTranspose2d(4, 4, 2, stride=2, groups=4)
    t = torch.randn(1, 4, 3, 5)
    out = local_prop(t.permute(0, 2, 3, 1), conv.weight, conv.bias).permute(0, 3, 1, 2)
    assert_close(out, conv(t))
    assert torch.allclose(out[0, 2, 2 * 1 + 1, 2 * 4 + 0], conv.weight[2, 0, 1, 0] * t[0, 2, 1, 4] + conv.bias[2])

def test_localagg_identity_when_last_convs_zero():
    torch.manual_seed(1)
    la = LocalAgg(16, drop_path=0.5)
    x = torch.randn(3, 16, 10, 12)
    assert not torch.equal(la.eval()(x), x)
    for c in la.last_convs(): nn.init.zeros_(c.weight); nn.init.zeros_(c.bias)
    assert torch.equal(la.train()(x), x) and torch.equal(la.eval()(x), x)

def test_convutr_unit_matches_functional_ref():
    torch.manual_seed(2)
    u = ConvUtrUnit(8, 7).eval()
    for b in (u.bn1, u.bn2, u.bn3): b.running_mean.uniform_(-1, 1); b.running_var.uniform_(0.5, 2)
    p = dict(dw_w=u.dw.weight, dw_b=u.dw.bias, pw1_w=u.pw1.weight, pw1_b=u.pw1.bias, pw2_w=u.pw2.weight, pw2_b=u.pw2.bias,
             **{f'bn{i}': (b.weight, b.bias, b.running_mean, b.running_var) for i, b in enumerate((u.bn1, u.bn2, u.bn3), 1)})
    x = torch.randn(2, 8, 9, 11)
    assert_close(u(x), convutr_unit_ref(x, p))

@pytest.mark.parametrize('sr', [1, 2])
def test_sdpa_equals_ref(sr):
    torch.manual_seed(3)
    gsa, ln = GlobalSparseAttn(32, 4, sr), nn.LayerNorm(32, eps=1e-6)
    x = torch.randn(2, 8, 12, 32, requires_grad=True)
    ref, fast = gsa.forward_ref(ln(x)), gsa(x, pre_norm=ln)
    assert_close(fast, ref)
    assert_close(torch.autograd.grad(fast.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0])
    q, k, v = torch.randn(3, 1, 2, 20, 8).unbind(0)
    assert_close(F.scaled_dot_product_attention(q, k, v), attention_ref(q, k, v))

def test_fast_equals_released_path_train_mode():
    torch.manual_seed(4)
    m = mobileutr()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(9); ref = set_fast_path(m, False)(x)
    torch.manual_seed(9); fast = set_fast_path(m, True)(x)
    assert_close(fast, ref)

def test_one_channel_input(net):
    g = torch.randn(1, 1, 32, 48)
    with torch.no_grad(): assert torch.equal(net(g), net(g.repeat(1, 3, 1, 1)))

@pytest.mark.parametrize('shape', [(1, 3, 250, 256), (1, 3, 256, 200), (1, 3, 8, 8)])
def test_shape_error(net, shape):
    with pytest.raises(ShapeError, match='multiples of 16') as e: net(torch.randn(shape))
    assert isinstance(e.value, ValueError) and isinstance(e.value, MedsegError)
    assert 'Resize or pad' in str(e.value)

def test_wrong_channels(net):
    with pytest.raises(ShapeError): net(torch.randn(1, 2, 32, 32))

def test_eval_determinism_and_channels_last(net):
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        a, b = net(x), net(x)
        assert torch.equal(a, b)
        m2 = mobileutr(channels_last=False).eval(); m2.load_state_dict(net.state_dict())
        assert net.stem[0].weight.is_contiguous(memory_format=torch.channels_last) and m2.stem[0].weight.is_contiguous()
        c = m2(x)
    assert_close(c, a)

def test_train_mode_uses_drop_path():
    torch.manual_seed(5)
    m = mobileutr().train()
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1); a = m(x)
    torch.manual_seed(1); b = m(x)
    assert torch.equal(a, b)    # the same seed gives the same dropped paths

def test_load_released_state_dict():
    src, dst = mobileutr(), mobileutr()
    load_released_state_dict(dst, {f'k{i}': v for i, v in enumerate(src.state_dict().values())})
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    with pytest.raises(ShapeError): load_released_state_dict(mobileutr_l(), src.state_dict())

def test_adaptive_kernel():
    import numpy as np
    yy, xx = np.mgrid[:256, :256]
    disk = lambda r: (yy - 128) ** 2 + (xx - 128) ** 2 <= r * r
    assert abs(target_diameters([disk(40)])[0] - 80) < 1
    assert adaptive_lgl_kernel([disk(72), disk(72)]) == 9 and adaptive_lgl_kernel([disk(40)]) == 5
    with pytest.raises(ValueError): adaptive_lgl_kernel([np.zeros((8, 8))])
    m = mobileutr(lgl_kernel=5)
    assert m.lgl[0].local.agg.kernel_size == (5, 5)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_fast_paths_match_released():
    "On the GPU: NCHW released fp32 path == channels_last fast path (fp32, TF32 off), and bf16 autocast stays close."
    from medseg_tutor.core import no_tf32
    torch.manual_seed(0)
    ref = set_fast_path(mobileutr(channels_last=False), False).cuda().eval()
    fast = mobileutr().cuda().eval(); fast.load_state_dict(ref.state_dict())
    x = torch.randn(4, 3, 128, 128, device='cuda')
    with torch.no_grad(), no_tf32():
        y_ref, y_fast = ref(x), fast(x)
        assert_close(y_fast, y_ref, 'cuda fp32 fast vs released', rtol=1e-3, atol=1e-3)
        with torch.autocast('cuda', dtype=torch.bfloat16): y_bf = fast(x)
    assert (y_bf.float() - y_ref).abs().max() < 0.1 * y_ref.abs().max() + 0.05
    fast.train(); ref.train()
    with no_tf32():
        torch.manual_seed(3); g_ref = torch.autograd.grad(ref(x).square().mean(), ref.vit[0].attn.attn.qkv.weight)[0]
        torch.manual_seed(3); g_fast = torch.autograd.grad(fast(x).square().mean(), fast.vit[0].attn.attn.qkv.weight)[0]
    assert_close(g_fast, g_ref, 'cuda grad qkv', rtol=1e-3, atol=1e-4)

def test_fold_batchnorm_same_function():
    torch.manual_seed(6)
    m = mobileutr().train()
    with torch.no_grad():
        for _ in range(2): m(torch.randn(2, 3, 32, 32) * 3 + 1)   # non-trivial running statistics
    m.eval()
    f = fold_batchnorm(m)
    assert sum(isinstance(b, nn.BatchNorm2d) for b in f.modules()) == 13 and not m.stem[1].__class__ is nn.Identity
    x = torch.randn(2, 3, 48, 32)
    with torch.no_grad(): assert_close(f(x), m(x))
