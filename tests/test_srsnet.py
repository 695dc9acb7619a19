"SRSNet: DPConv (reference / grouped / affine paths, structure), R and S networks, two-phase training with a frozen R."
import math
import pytest, torch, torch.nn.functional as F
from medseg_tutor.core import ShapeError
from medseg_tutor.blocks.dpconv import DPConv, dpconv_ref
from medseg_tutor.nets.srsnet import SRSReconstructionNet, SRSSegmentationNet, SRSNet, ResBlock
from medseg_tutor.train.srsnet import phase_params, segmentation_loss, seg_scores, reconstruction_step, reconstruction_evaluate
from medseg_tutor.train.engine import Trainer, TrainConfig, read_csv
from medseg_tutor.train.checkpoint import load_checkpoint
from medseg_tutor.data.tensors import TensorSegData

torch.set_num_threads(1)
def n_params(m): return sum(p.numel() for p in m.parameters())

def dp(impl, Cin=8, Cout=16, k=3, CI=8, seed=0):
    torch.manual_seed(seed)
    m = DPConv(Cin, Cout, k, CI, impl=impl).double()
    with torch.no_grad(): m.gen.weight.mul_(50)       # make the dynamic part dominate
    return m

@pytest.fixture
def xi():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 8, 9, 11, generator=g, dtype=torch.float64), torch.randn(4, 8, 5, 6, generator=g, dtype=torch.float64)

def test_dpconv_param_count_and_released_keys():
    m = DPConv(256, 256, 3, 64)
    assert n_params(m) == 1_184_930
    sd = m.released_state_dict()
    assert sorted(sd) == sorted(['Conv.0.weight', 'Conv.0.bias', 'Conv.2.weight', 'Conv.2.bias', 'ca.fc1.weight', 'ca.fc2.weight', 'sa.conv1.weight'])
    m2 = DPConv(256, 256, 3, 64); m2.load_released_state_dict(sd)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))

@pytest.mark.parametrize('impl', ['grouped', 'affine'])
def test_dpconv_matches_reference_values_and_grads(impl, xi):
    x, info = xi
    m, r = dp(impl), dp('grouped')
    xa, ia = x.clone().requires_grad_(), info.clone().requires_grad_()
    xb, ib = x.clone().requires_grad_(), info.clone().requires_grad_()
    y = m(xa, ia); yr = dpconv_ref(xb, ib, r.released_state_dict(keep_vars=True), 16, 3)
    assert torch.allclose(y, yr, rtol=1e-9, atol=1e-10)
    w = torch.randn_like(y); (y * w).sum().backward(); (yr * w).sum().backward()
    for a, b in ((xa.grad, xb.grad), (ia.grad, ib.grad), (m.gen.weight.grad, r.gen.weight.grad), (m.ca.fc1.weight.grad, r.ca.fc1.weight.grad)):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)

@pytest.mark.parametrize('impl', ['grouped', 'affine'])
def test_dpconv_per_sample_independence_and_permutation(impl, xi):
    x, info = xi; m = dp(impl)
    with torch.no_grad():
        y = m(x, info)
        for b in range(len(x)): assert torch.allclose(m(x[b:b+1], info[b:b+1]), y[b:b+1], atol=1e-11)
        perm = torch.tensor([3, 1, 0, 2])
        assert torch.allclose(m(x[perm], info[perm]), y[perm], atol=1e-11)
        # changing one sample's info changes only that sample's output
        info2 = info.clone(); info2[2] = torch.randn_like(info2[2]) * 3
        y2 = m(x, info2)
        assert torch.allclose(y2[[0, 1, 3]], y[[0, 1, 3]], atol=1e-11) and not torch.allclose(y2[2], y[2])

def test_dpconv_affine_identity(xi):
    x, info = xi; m = dp('grouped'); r = 16 // 8
    with torch.no_grad():
        D, g = m.kernels(info), m.scalars(info); A, Bk = m.static_kernels()
        assert torch.allclose(D, g.repeat_interleave(r, 1)[:, :, None, None, None] * A + Bk, atol=1e-12)
        y = m(x, info)
        per_channel = g.repeat_interleave(r, 1)[:, :, None, None] * F.conv2d(x, A, padding=1) + F.conv2d(x, Bk, padding=1)
        assert torch.allclose(y, per_channel, atol=1e-10)

@pytest.mark.parametrize('impl', ['grouped', 'affine'])
def test_dpconv_degenerate_static_and_linear(impl, xi):
    x, info = xi; m = dp(impl)
    with torch.no_grad():
        y = m(x, info); x2 = torch.randn_like(x)
        assert torch.allclose(m(-1.5 * x + x2, info), -1.5 * y + m(x2, info), atol=1e-9)
        m.gen.weight.zero_()
        static = F.conv2d(x, m.gen.bias.view(16, 8, 3, 3), padding=1)
        assert torch.allclose(m(x, info), static, atol=1e-12) and torch.allclose(m(x, 5 * torch.randn_like(info)), static, atol=1e-12)

def test_dpconv_bad_input():
    m = DPConv(8, 16, 3, 8)
    with pytest.raises(ShapeError): m(torch.randn(2, 8, 5, 5), torch.randn(3, 8, 5, 5))
    with pytest.raises(ShapeError): m(torch.randn(2, 7, 5, 5), torch.randn(2, 8, 5, 5))
    with pytest.raises(ValueError): DPConv(8, 16, 3, 7)
    with pytest.raises(ValueError): DPConv(8, 4, 3, 8, impl='affine')
    assert DPConv(8, 4, 3, 8).impl == 'grouped'     # CI does not divide Cout: only the grouped path is exact
    with pytest.raises(ValueError): DPConv(8, 16, 3, 8, impl='auto')

def tiny(seed=0):
    torch.manual_seed(seed)
    R = SRSReconstructionNet(stem=8, widths=(8, 8, 16, 32), depths=(1, 1, 1, 1))
    S = SRSSegmentationNet(stem=8, widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), info_channels=32)
    return R, S

def test_shapes_and_multiple_of_8():
    R, S = tiny()
    x = torch.randn(2, 3, 16, 24)
    with torch.no_grad():
        assert R(x).shape == x.shape and R.guide(x).shape == (2, 32, 2, 3)
        assert S(x, R.guide(x)).shape == (2, 1, 16, 24) and SRSNet(R, S)(x).shape == (2, 1, 16, 24)
        for bad in (torch.randn(1, 3, 20, 24), torch.randn(1, 3, 16, 12)):
            with pytest.raises(ShapeError, match='multiples of 8'): SRSNet(R, S)(bad)
            with pytest.raises(ValueError, match='multiples of 8'): R(bad)
    with pytest.raises(ValueError, match='info'): S(x)

def test_param_counts_vs_release():
    R, S = SRSReconstructionNet(), SRSSegmentationNet()
    assert n_params(R) == 734_250 and n_params(S) == 9_874_220        # released (registered): 795,586 and 11,207,308
    assert n_params(S.dpconv) == 1_184_930
    assert n_params(S) - n_params(SRSSegmentationNet(use_dpconv=False)) == 1_184_930
    assert n_params(R.stem) + sum(n_params(getattr(R, f'x{i}0')) for i in range(4)) == 482_000
    assert n_params(ResBlock(128, 256)) == 936_290 and n_params(ResBlock(256, 256)) == 1_197_666

def _snap(m): return {k: v.detach().clone() for k, v in m.state_dict().items()}
def _changed(a, b): return [k for k in a if not torch.equal(a[k], b[k])]

@pytest.mark.parametrize('official', [False, True])
def test_phase2_r_frozen(official):
    torch.manual_seed(0)
    data = TensorSegData(torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8), (torch.rand(6, 1, 16, 16) > 0.8).to(torch.uint8), augment=True)
    cfg = TrainConfig(epochs=1, batch_size=3, progress=False, verbose=False)
    R, S = tiny()
    Trainer(R, data, None, cfg, step=reconstruction_step, device='cpu').fit()
    net = SRSNet(R, S, official_bn_train=official)
    assert all(not p.requires_grad for p in net.R.parameters())
    assert {id(p) for p in phase_params(net, 2)}.isdisjoint({id(p) for p in net.R.parameters()})
    r0, s0 = _snap(net.R), _snap(net.S)
    tr = Trainer(net, data, None, cfg, loss_fn=segmentation_loss, device='cpu')
    assert {id(p) for g in tr.opt.param_groups for p in g['params']} == {id(p) for p in phase_params(net, 2)}
    tr.fit()
    assert all(p.grad is None for p in net.R.parameters())
    moved_R = _changed(r0, _snap(net.R))
    assert len(_changed(s0, _snap(net.S))) > 50
    if official:
        assert any(k.endswith('running_mean') for k in moved_R)
        assert all(k.endswith(('running_mean', 'running_var', 'num_batches_tracked')) for k in moved_R), moved_R
    else:
        assert moved_R == []
    assert net.train().R.training == official

def test_losses_and_scores():
    y = torch.zeros(2, 1, 8, 8); y[:, :, 2:5, 3:6] = 1
    assert segmentation_loss(40 * (2 * y - 1), y) < 1e-6
    assert abs(segmentation_loss(torch.zeros_like(y), torch.zeros_like(y)).item() - (0.5 * math.log(2) + 1 - 1e-5 / (32 + 1e-5))) < 1e-6
    s = seg_scores(40 * (2 * y - 1), y); assert abs(s['IoU'] - 1) < 1e-6 and abs(s['F1'] - 1) < 1e-6
    half = y.clone(); half[:, :, 2:5, 3] = 0          # predict 6 of 9 target pixels
    s = seg_scores(40 * (2 * half - 1), y); assert abs(s['IoU'] - 6 / 9) < 1e-9 and abs(s['F1'] - 12 / 15) < 1e-9
    s = seg_scores(-40 * torch.ones_like(y), torch.zeros_like(y)); assert s['IoU'] == 1 and s['F1'] == 1   # empty on empty

def test_released_state_dict_roundtrip():
    from medseg_tutor.nets.srsnet import released_key, released_state_dict, load_released_state_dict
    R1, S1 = tiny(0); R2, S2 = tiny(1)
    for a, b in ((R1, R2), (S1, S2)):
        sd = released_state_dict(a)
        assert len(sd) == len(a.state_dict())                     # the mapping is one-to-one
        dead = {'IPATR0.tr.weight': torch.zeros(1), 'conv0_3_1x1.bias': torch.zeros(1), 'bottomuplocal_fpn_1.bn1.weight': torch.zeros(1)}
        assert load_released_state_dict(b, {**{'module.' + k: v for k, v in sd.items()}, **dead}) == sorted(dead)
        assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert released_key('x21.2.sa.conv.weight') == 'conv2_1.2.sa.conv1.weight'
    assert released_key('final.shortcut.1.running_mean') == 'finalconv.0.shortcut.1.running_mean'
    assert released_key('up3.conv.0.weight') == 'fup3.conv.0.weight'
    with pytest.raises(KeyError): load_released_state_dict(R2, {})

def test_both_phases_run_through_the_engine_and_resume_exactly(tmp_path):
    "No second loop: phase 1 and phase 2 write the engine's log.csv / best.pt, and a stopped phase resumes bit for bit."
    from medseg_tutor.train.engine import StopTraining
    torch.manual_seed(0)
    data = TensorSegData(torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8), (torch.rand(8, 1, 16, 16) > 0.8).to(torch.uint8), augment=True)
    cfg = TrainConfig(epochs=3, batch_size=4, progress=False, verbose=False, select_metric='mse', select_mode='min')
    def run(out, cbs=(), resume=False):
        torch.manual_seed(0); R, _ = tiny()
        return Trainer(R, data, data, cfg, step=reconstruction_step, evaluate=reconstruction_evaluate, callbacks=cbs,
                       out=out, device='cpu').fit(resume=resume)
    run(tmp_path/'a')
    def stop(t):
        if t.epoch == 1: raise StopTraining
    with pytest.raises(StopTraining): run(tmp_path/'b', [stop])
    run(tmp_path/'b', resume=True)
    wa, wb = load_checkpoint(tmp_path/'a'/'last.pt')['model'], load_checkpoint(tmp_path/'b'/'last.pt')['model']
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    log = read_csv(tmp_path/'a'/'log.csv')
    assert len(log) == 3 and {'epoch', 'train_loss', 'lr', 'epoch_s', 'val_mse'} <= set(log[0])
    R, S = tiny(); R.load_state_dict(load_checkpoint(tmp_path/'a'/'best.pt')['model'])
    res = Trainer(SRSNet(R, S), data, data, cfg.replace(epochs=1, select_metric='iou', select_mode='max'), loss_fn=segmentation_loss,
                  out=tmp_path/'p2', device='cpu').fit()
    assert (tmp_path/'p2'/'best.pt').exists() and 'val_iou' in read_csv(tmp_path/'p2'/'log.csv')[0]
