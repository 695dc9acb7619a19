"MambaMIM invariants on tiny CPU sizes (masking, sparse encoder, S6T, loss, schedule, fine-tuning; arXiv 2408.08070 and the released FengheTan9/MambaMIM@8b96c05)."
import math
import numpy as np
import pytest
import torch
from medseg_tutor.core import ShapeError
from medseg_tutor.mim.masking import hybrid_mask
from medseg_tutor.blocks.masked import upsample_mask, mask_like, token_drop, token_restore, MaskedLayerNorm3d
from medseg_tutor.mim.s6t import s6t_fill, s6t_fill_ref
from medseg_tutor.nets.hymamba import hymamba_tiny, sincos_pos_embed_3d, HyMambaClassifier
from medseg_tutor.mim.pretrain import (MambaMIM, masked_patch_loss, patchify, unpatchify, wd_cosine,
                                       WeightDecayCosine, mim_pretrain_step)
from medseg_tutor.train.engine import lr_factor, Trainer, TrainConfig

torch.set_num_threads(1)

# ---------------------------------------------------------------- 1. masks
@pytest.mark.parametrize('grid,ratio', [(6, 0.75), ((2, 3, 4), 0.5), (4, 0.9)])
def test_mask_counts_every_scale(grid, ratio):
    v = hybrid_mask(5, grid, ratio, generator=torch.Generator().manual_seed(0))
    L = v[0].numel(); k = max(1, round(L * (1 - ratio)))
    assert v.dtype == torch.bool and (v.flatten(1).sum(1) == k).all()
    for f in (1, 2, 4, 8, 16):
        m = upsample_mask(v, f)
        assert (m.flatten(1).sum(1) == k * f ** 3).all()
        assert torch.equal(m[..., ::f, ::f, ::f], v)

def test_mask_216_54():
    v = hybrid_mask(3, 6)
    assert v.shape == (3, 1, 6, 6, 6) and (v.flatten(1).sum(1) == 54).all()
    assert float((~upsample_mask(v, 16)).float().mean()) == 0.75

def test_mask_bad_ratio():
    with pytest.raises(ValueError): hybrid_mask(1, 6, 1.0)

# ---------------------------------------------------------------- token drop (12)
def test_token_drop_raster_order_and_official():
    v = hybrid_mask(4, 6, generator=torch.Generator().manual_seed(1))
    tok = torch.randn(4, 216, 3)
    kept, ids = token_drop(tok, v)
    assert kept.shape == (4, 54, 3)
    for b in range(4): assert torch.equal(ids[b], v[b].flatten().nonzero().squeeze(1))
    back = token_restore(kept, ids, 216, torch.zeros(3))
    assert torch.equal(back[v.flatten(1)], tok[v.flatten(1)])
    ko, io = token_drop(tok, v, official=True)                      # B2: batch-wide count -> all 216 kept
    assert ko.shape == (4, 216, 3)

# ---------------------------------------------------------------- encoder (2, 11, 12)
@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    return hymamba_tiny().eval()

def test_encoder_shapes_and_size_check(tiny):
    with torch.no_grad(): fs = tiny(torch.rand(1, 1, 64, 64, 64))
    assert [tuple(f.shape[1:]) for f in fs] == [(16, 64, 64, 64), (32, 32, 32, 32), (48, 16, 16, 16), (96, 8, 8, 8), (96, 4, 4, 4)]
    with pytest.raises(ShapeError): tiny(torch.rand(1, 1, 64, 64, 50))
    with pytest.raises(ShapeError): tiny(torch.rand(1, 2, 64, 64, 64))

def test_sparse_zeros_and_masked_input_invariance(tiny):
    x = torch.rand(2, 1, 64, 64, 64)
    v = hybrid_mask(2, 4, generator=torch.Generator().manual_seed(2))
    noise = torch.randn_like(x) * (~upsample_mask(v, 16))
    with torch.no_grad(): a, b = tiny(x, v), tiny(x + noise, v)
    for i in range(5):
        assert torch.equal(a[i], b[i])
        if i < 4: assert (a[i] * ~mask_like(v, a[i])).abs().max() == 0

def test_mamba_stage_visible_independent_of_batch(tiny):
    x = torch.rand(3, 1, 64, 64, 64)
    v = hybrid_mask(3, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(): full, one = tiny(x, v)[4], tiny(x[1:2], v[1:2])[4]
    m = mask_like(v[1:2], one).expand_as(one)
    assert torch.allclose(full[1:2][m], one[m], atol=1e-5)

def test_masked_layernorm_zero_and_local():
    ln = MaskedLayerNorm3d(4); torch.nn.init.normal_(ln.bias)
    x = torch.randn(1, 4, 8, 8, 8); v = hybrid_mask(1, 2, 0.5)
    m = mask_like(v, x)
    y = ln(x, v)
    assert (y * ~m).abs().max() == 0
    assert torch.equal(ln(x + 3 * ~m, v), y)

# ---------------------------------------------------------------- S6T (14)
def _data(B=2, C=4, grid=(3, 2, 4), ratio=0.7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, C, *grid, generator=g, dtype=dtype), hybrid_mask(B, grid, ratio, generator=g),
            0.4 * torch.randn(C, C, generator=g, dtype=dtype))

@pytest.mark.parametrize('layout', [False, True])
def test_s6t_fast_equals_ref_values_and_grads(layout):
    F, v, A = _data()
    F1, A1, F2, A2 = (t.clone().requires_grad_() for t in (F, A, F, A))
    y1, y2 = s6t_fill(F1, v, A1, official_layout=layout), s6t_fill_ref(F2, v, A2, official_layout=layout)
    assert torch.allclose(y1, y2, atol=1e-12)
    w = torch.randn_like(y1); (y1 * w).sum().backward(); (y2 * w).sum().backward()
    assert torch.allclose(F1.grad, F2.grad, atol=1e-12) and torch.allclose(A1.grad, A2.grad, atol=1e-10)
    assert torch.equal(y1[v.expand_as(y1)], F[v.expand_as(F)])

def _anchors(v):
    a = v.reshape(-1).clone(); a[0] = a[-1] = True
    return a.nonzero().squeeze(1).tolist()

def test_s6t_closed_forms():
    F, v, _ = _data(ratio=0.8, seed=4)
    C = F.shape[1]
    Z0 = s6t_fill(F, v, torch.zeros(C, C, dtype=F.dtype)).flatten(2).transpose(1, 2)
    Zi = s6t_fill(F, v, torch.eye(C, dtype=F.dtype)).flatten(2).transpose(1, 2)
    X = F.flatten(2).transpose(1, 2)
    for b in range(F.shape[0]):
        vb, idx = v[b].reshape(-1), _anchors(v[b])
        for p, q in zip(idx[:-1], idx[1:]):
            g = q - p
            for j in range(g):
                if vb[p + j]: continue
                assert torch.equal(Z0[b, p + j], X[b, q] if j == g - 1 else torch.zeros(C, dtype=F.dtype))
                assert torch.allclose(Zi[b, p + j], (j + 1) * X[b, p] + (X[b, q] - X[b, p]) * j * (j + 1) / (2 * (g - 1)))
        if not vb[-1]: assert (Z0[b, -1] == 0).all()

def test_s6t_locality_and_sample_independence():
    F, v, A = _data(B=2, ratio=0.6, seed=5)
    L = v[0].numel(); idx = _anchors(v[0])
    base = s6t_fill(F, v, A)
    for i, k in enumerate(idx):
        F2 = F.clone(); F2.view(2, F.shape[1], -1)[0, :, k] += 1
        d = (s6t_fill(F2, v, A) - base).flatten(2).abs().sum(1)
        changed = set(d[0].nonzero().squeeze(1).tolist())
        allowed = {k} | set(range(idx[i - 1], k) if i else []) | set(range(k, idx[i + 1]) if i + 1 < len(idx) else [])
        assert changed <= allowed and (d[1] == 0).all()            # other sample untouched
    perm = torch.tensor([1, 0])
    assert torch.allclose(s6t_fill(F[perm], v[perm], A), base[perm], atol=1e-12)

def test_s6t_official_layout_is_reshape_without_transpose():
    F, v, A = _data(B=1, C=3, grid=(2, 2, 3), ratio=0.5, seed=6)
    C, L = 3, 12
    X = F[0].reshape(C, L).T
    # raw Z at every position (loop), then the released reshape
    idx, Z = _anchors(v[0]), []
    for p, q in zip(idx[:-1], idx[1:]):
        g, z = q - p, 0
        for j in range(g):
            a = j / (g - 1) if g > 1 else 0.
            z = z + torch.linalg.matrix_power(A, g - 1 - j) @ ((1 - a) * X[p] + a * X[q]); Z.append(z)
    Z.append(A @ X[-1]); Z = torch.stack(Z)
    expect = torch.where(v[0], F[0], Z.reshape(C, 2, 2, 3))
    assert torch.allclose(s6t_fill(F, v, A, official_layout=True)[0], expect, atol=1e-12)

def test_s6t_shape_errors():
    F, v, A = _data()
    with pytest.raises(ShapeError): s6t_fill(F, v, torch.zeros(3, 3, dtype=F.dtype))
    with pytest.raises(ShapeError): s6t_fill(F, v[:, :, :2], A)

# ---------------------------------------------------------------- loss (15), shapes (3)
def test_loss_ignores_visible_and_zero_at_target():
    x, rec = torch.rand(2, 1, 32, 32, 32), torch.randn(2, 1, 32, 32, 32)
    v = hybrid_mask(2, 2, 0.5)
    l = masked_patch_loss(x, rec, v)
    rec2 = torch.where(upsample_mask(v, 16), rec + 50, rec)
    assert torch.equal(masked_patch_loss(x, rec2, v), l)
    t = patchify(x); tn = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
    assert masked_patch_loss(x, unpatchify(tn, (2, 2, 2)), v) == 0
    assert abs(float(masked_patch_loss(x, torch.zeros_like(x), v)) - 4095 / 4096) < 1e-3

def test_mambamim_shapes_invariance_and_step():
    torch.manual_seed(0)
    m = MambaMIM(hymamba_tiny(), decoder_width=32)
    x = torch.rand(2, 1, 64, 64, 64); v = hybrid_mask(2, 4, generator=torch.Generator().manual_seed(7))
    m.eval()
    with torch.no_grad():
        feats = m.encoder(x, v, skip_enc1=True)
        to_dec = m.densify_features(feats, v)
        assert [tuple(t.shape[1:]) for t in to_dec] == [(32, 4, 4, 4), (16, 8, 8, 8), (8, 16, 16, 16), (4, 32, 32, 32)]
        l1, o1 = m(x, v)
        noise = torch.rand_like(x) * ~upsample_mask(v, 16)
        _, o2 = m(x + noise, v)
    assert o1['pred'].shape == x.shape and torch.equal(o1['pred'], o2['pred'])   # reconstruction ignores masked voxels
    from medseg_tutor.mim.data import VolumeData
    data = VolumeData([x[0, 0], x[1, 0]], size=64, n_crops=1, flips=(0, 0, 0))
    cfg = TrainConfig(epochs=1, batch_size=2, optimizer='adamw', lr=1e-3, schedule='cosine', warmup_epochs=0.5,
                      select_metric='train_loss', select_mode='min', max_steps=1, progress=False, verbose=False)
    a0 = m.A.detach().clone()
    tr = Trainer(m, data, cfg=cfg, step=mim_pretrain_step, callbacks=[WeightDecayCosine()], device='cpu')
    res = tr.fit()
    assert res['steps'] == 1 and math.isfinite(res['history'][0]['train_loss']) and not torch.equal(a0, m.A.detach())
    assert math.isclose(tr.opt.param_groups[0]['weight_decay'], wd_cosine(0, tr.sched.total))

def test_released_twin_runs():
    torch.manual_seed(0)
    m = MambaMIM(hymamba_tiny(), decoder_width=32, released=True)
    loss, out = m(torch.rand(4, 1, 64, 64, 64))
    assert torch.isfinite(loss)

# ---------------------------------------------------------------- schedule (16), pos-embed (17)
def test_schedule_endpoints():
    "The released lr (engine cosine with 0.005 warm-up start, 0.001 end) and weight decay 0.04 -> 0.2."
    T, W = 500, 200
    f = lambda i: lr_factor(i, T, 'cosine', warmup=W, warmup_start=0.005, final_ratio=0.001)
    assert math.isclose(f(0), 0.005) and math.isclose(f(W), 1.0) and math.isclose(f(T), 0.001)
    assert math.isclose(wd_cosine(0, T), 0.04) and math.isclose(wd_cosine(T, T), 0.2)
    assert all(wd_cosine(i, T) <= wd_cosine(i + 1, T) for i in range(T))

def test_pos_embed():
    pe = sincos_pos_embed_3d(6, 384)
    assert pe.shape == (1, 216, 384)
    om = 1. / 10000 ** (torch.arange(64) / 64)
    for h, w, d in ((0, 0, 0), (5, 1, 3), (2, 4, 5)):
        t = 36 * h + 6 * w + d
        assert torch.allclose(pe[0, t, :64], torch.sin(h * om)) and torch.allclose(pe[0, t, 128:192], torch.sin(w * om))
    enc = hymamba_tiny()
    assert not any(p is enc.mae.pos_embed for p in enc.parameters()) and 'mae.pos_embed' in enc.state_dict()
    with pytest.raises(ShapeError): sincos_pos_embed_3d(4, 100)

def test_classifier_head():
    torch.manual_seed(0)
    clf = HyMambaClassifier(hymamba_tiny(), 2)
    assert clf(torch.rand(2, 1, 64, 64, 64)).shape == (2, 2)

# ---------------------------------------------------------------- real data
def test_real_adrenal_volume(data_dir):
    p = data_dir / 'medmnist' / 'adrenalmnist3d_64.npz'
    if not p.exists(): pytest.skip('no AdrenalMNIST3D here')
    x = torch.from_numpy(np.load(p)['train_images'][:2]).float()[:, None] / 255
    torch.manual_seed(0)
    m = MambaMIM(hymamba_tiny(), decoder_width=32)
    loss, out = m(x)
    assert torch.isfinite(loss) and out['mask'].shape == (2, 1, 4, 4, 4)
    assert torch.equal(out['masked_input'] * ~upsample_mask(out['mask'], 16), torch.zeros_like(x))

# ---------------------------------------------------------------- fine-tuning
from medseg_tutor.mim.finetune import HyMambaUNETR, load_encoder, dice_ce_loss, sliding_window_predict

def test_load_encoder_report_and_shape_error():
    torch.manual_seed(0)
    mim = MambaMIM(hymamba_tiny(), decoder_width=32)
    seg = HyMambaUNETR(hymamba_tiny(), 2)
    rep = load_encoder(seg, mim.state_dict(), verbose=False)
    assert not rep['missing'] and not rep['unexpected']
    assert torch.equal(seg.encoder.embeddings.stem.weight, mim.encoder.embeddings.stem.weight)
    sd = dict(mim.encoder.state_dict()); sd['mae.blocks.0.mamba.conv1d_b.weight'] = torch.zeros(1)
    assert load_encoder(seg, sd, verbose=False)['unexpected'] == ['mae.blocks.0.mamba.conv1d_b.weight']
    with pytest.raises(ShapeError): load_encoder(HyMambaUNETR(hymamba_tiny(channels=(8, 16, 32, 48, 48)), 2), sd, verbose=False)
    with torch.no_grad(): assert seg(torch.rand(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)

def test_dice_ce_and_sliding_window():
    lg, tg = torch.randn(2, 3, 6, 6, 6), torch.randint(0, 3, (2, 6, 6, 6))
    assert dice_ce_loss(torch.nn.functional.one_hot(tg, 3).movedim(-1, 1).float() * 50, tg) < 1e-4
    monai = pytest.importorskip('monai')
    from monai.losses import DiceCELoss
    assert torch.allclose(dice_ce_loss(lg, tg), DiceCELoss(to_onehot_y=True, softmax=True)(lg, tg[:, None]), atol=1e-5)
    conv = torch.nn.Conv3d(1, 2, 1); vol = torch.randn(1, 1, 30, 20, 12)
    for mode in ('constant', 'gaussian'):
        assert torch.allclose(sliding_window_predict(conv, vol, 16, 0.5, mode=mode), conv(vol), atol=1e-5)

# ---------------------------------------------------------------- 3D data (NIfTI, dataset.json, folders)
def test_volume_pipeline_nifti(tmp_path):
    nib = pytest.importorskip('nibabel')
    import json as _json
    from medseg_tutor.core import DataError
    from medseg_tutor.mim.data import load_nifti_ras, read_datalist, load_volumes, VolumeData, save_volumes, load_volume_cache
    a = np.full((40, 60, 30), -1000., np.float32); a[5:35, 10:50, 5:25] = 40.
    aff = np.diag([-3., 1.5, 3., 1.])
    nib.save(nib.Nifti1Image(a, aff), str(tmp_path / 'ct.nii.gz'))
    v, sp = load_nifti_ras(tmp_path / 'ct.nii.gz')
    assert sp == (3., 1.5, 3.) and torch.equal(v, torch.from_numpy(a[::-1].copy()))
    (tmp_path / 'dataset.json').write_text(_json.dumps({'training': [{'image': 'ct.nii.gz'}]}))
    vols = load_volumes(tmp_path)
    sh = vols['images'][0].shape                                    # body 30x40x20 voxels at 3/1.5/3 mm -> ~60x40x40 at 1.5 mm
    assert all(abs(a - b) <= 2 for a, b in zip(sh, (60, 40, 40))), sh
    ds = VolumeData(vols['images'], size=48)
    x, = ds.batch(torch.tensor([0]), torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 48, 48, 48) and float(x.min()) >= 0 and float(x.max()) <= 1
    save_volumes(vols, tmp_path / 'c.pt')
    assert torch.equal(load_volume_cache(tmp_path / 'c.pt')['images'][0], vols['images'][0])
    (tmp_path / 'd2.json').write_text(_json.dumps({'training': ['nope.nii.gz']}))
    with pytest.raises(DataError, match='nope.nii.gz'): read_datalist(tmp_path / 'd2.json')
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), str(tmp_path / 'four.nii.gz'))
    with pytest.raises(DataError, match='four.nii.gz'): load_nifti_ras(tmp_path / 'four.nii.gz')
    with pytest.raises(DataError, match='does not exist'): read_datalist(tmp_path / 'nowhere')

def test_volume_data_labels_msd_layout(tmp_path):
    pytest.importorskip('nibabel')
    from medseg_tutor.data.synthetic import make_example_dataset
    from medseg_tutor.mim.data import read_datalist, load_volumes, VolumeData, split_names
    root = make_example_dataset('msd_hippocampus', tmp_path / 'hip', n=4, size=32)
    items = read_datalist(root, labels=True)
    assert len(items) == 4 and all(d['label'] is not None for d in items)
    vols = load_volumes(items, modality='mri', target_spacing=None, labels=True)
    ds = VolumeData(vols['images'], vols['labels'], vols['names'], size=16, n_crops=2)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x, y = ds.batch(torch.tensor([0, 2]), g1)
    assert x.shape == (4, 1, 16, 16, 16) and y.shape == (4, 16, 16, 16) and y.dtype == torch.long
    x2, y2 = ds.batch(torch.tensor([0, 2]), g2)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    tr, va = split_names([f'c{i}' for i in range(208)], 0.2, seed=0)
    assert len(va) == 42 and len(tr) == 166 and not set(tr) & set(va)
    assert (tr, va) == split_names([f'c{i}' for i in range(208)][::-1], 0.2, seed=0)

# ---------------------------------------------------------------- bad input: one line naming the fix (issue 15)
@pytest.mark.parametrize('args', [(-1, 6), (0, 6), (2, 2.7), (2, (6, 6, 2.5)), (2, (6, 6)), (2.5, 6), (2, 6, 1.0)])
def test_hybrid_mask_bad_args(args):
    from medseg_tutor.core import MedsegError
    with pytest.raises(ShapeError) as e: hybrid_mask(*args)
    assert isinstance(e.value, MedsegError) and '\n' not in str(e.value)
    assert 'must be' in str(e.value)

def test_hybrid_mask_integral_floats_ok():
    assert hybrid_mask(2, 6.0).shape == (2, 1, 6, 6, 6)

def test_s6t_empty_batch():
    A = torch.zeros(3, 3)
    for fn in (s6t_fill, s6t_fill_ref):
        with pytest.raises(ShapeError, match='empty'):
            fn(torch.zeros(0, 3, 2, 2, 2), torch.zeros(0, 1, 2, 2, 2, dtype=torch.bool), A)

def test_layers_point_one_way():
    "nets/ and blocks/ import nothing from mim/, train/ or demos/."
    import re, pathlib
    root = pathlib.Path(__file__).resolve().parents[1] / 'medseg_tutor'
    for f in [root / 'nets' / 'hymamba.py', root / 'blocks' / 'masked.py']:
        src = f.read_text()
        assert not re.search(r'^\s*from\s+(\.\.|medseg_tutor\.)(mim|train|demos)\b', src, re.M), f

# ---------------------------------------------------------------- recipes: every MambaMIM recipe runs on tiny data
def test_recipes_smoke(tmp_path):
    pytest.importorskip('nibabel')
    from medseg_tutor.data.synthetic import make_example_dataset
    from medseg_tutor.mim.recipes import mambamim_pretrain_runner, mambamim_finetune_runner, RECIPE_DEFAULTS
    from medseg_tutor.train.engine import read_csv
    from medseg_tutor.train.checkpoint import model_from_checkpoint
    assert RECIPE_DEFAULTS['mambamim-pretrain']['lr'] == 1e-4 and RECIPE_DEFAULTS['mambamim-pretrain']['warmup_epochs'] == 40
    root = make_example_dataset('msd_hippocampus', tmp_path / 'hip', n=4, size=32)
    kw = dict(size=32, batch_size=1, max_steps=2, device='cpu', modality='mri', spacing='native', variant='tiny',
              progress=False, verbose=False)
    pt = mambamim_pretrain_runner(data_root=root, out=tmp_path / 'pt', **kw)
    assert pt['steps'] == 2 and (tmp_path / 'pt' / 'best.pt').is_file() and (tmp_path / 'pt' / 'encoder.pt').is_file()
    assert {'epoch', 'train_loss', 'lr', 'epoch_s'} <= set(read_csv(tmp_path / 'pt' / 'log.csv')[0])
    ft = mambamim_finetune_runner(data_root=root, out=tmp_path / 'ft', init=tmp_path / 'pt' / 'encoder.pt', **kw)
    assert ft['steps'] == 2 and (tmp_path / 'ft' / 'best.pt').is_file()
    model, meta = model_from_checkpoint(tmp_path / 'ft' / 'best.pt')
    assert meta['task'] == '3d-seg' and meta['num_classes'] == 3 and meta['data']['val_names']
    assert not set(meta['data']['train_names']) & set(meta['data']['val_names'])

def test_evaluate_and_predict_volumes(tmp_path):
    nib = pytest.importorskip('nibabel')
    from medseg_tutor.data.synthetic import make_example_dataset
    from medseg_tutor.mim.finetune import evaluate_volumes, predict_volumes
    from medseg_tutor.registry import create_model
    root = make_example_dataset('msd_hippocampus', tmp_path / 'hip', n=2, size=32)
    # a permuted, flipped affine: the label file must come back in the input's own grid
    f = sorted((root / 'imagesTr').iterdir())[0]
    img = nib.load(str(f)); a = np.asanyarray(img.dataobj)
    aff = np.array([[0, -1., 0, 5], [1., 0, 0, -3], [0, 0, 2., 1], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(a, aff), str(tmp_path / 'odd.nii.gz'))
    torch.manual_seed(0)
    model = create_model('hymamba_unetr', variant='tiny', num_classes=3, img_size=16)
    meta = dict(task='3d-seg', num_classes=3, preprocess=dict(modality='mri', spacing=None, size=16, labels={'1': 'Anterior', '2': 'Posterior'}))
    r = evaluate_volumes(model, meta, data_root=root, verbose=False)
    assert r['n'] == 2 and 0 <= r['dice_anterior'] <= 1 and 'hd95_posterior' in r
    rows = predict_volumes(model, meta, [tmp_path / 'odd.nii.gz'], tmp_path / 'pred')
    out = nib.load(rows[0]['output'])
    assert out.shape == a.shape and np.allclose(out.affine, aff)

def test_predict_3d_writes_predictions_csv(tmp_path):
    "`predict` on a 3D checkpoint: one CSV row per volume (input, output, voxels of every foreground class), as it says."
    pytest.importorskip('nibabel')
    import csv
    from pathlib import Path
    from medseg_tutor.data.synthetic import make_example_dataset
    from medseg_tutor.registry import create_model
    from medseg_tutor.train.checkpoint import save_checkpoint
    from medseg_tutor.train.infer import predict_files
    root = make_example_dataset('msd_hippocampus', tmp_path / 'hip', n=2, size=32)
    torch.manual_seed(0)
    model = create_model('hymamba_unetr', variant='tiny', num_classes=3, img_size=16)
    meta = dict(model=model.medseg_spec, task='3d-seg', in_channels=1, num_classes=3,
                preprocess=dict(modality='mri', spacing=None, size=16), data={})
    save_checkpoint(dict(model=model.state_dict(), meta=meta, epoch=1, metrics={}, config={}), tmp_path / 'best.pt')
    rows = predict_files(tmp_path / 'best.pt', [root / 'imagesTr'], tmp_path / 'pred', device='cpu')
    with open(tmp_path / 'pred' / 'predictions.csv', newline='') as f: table = list(csv.DictReader(f))
    assert len(table) == len(rows) == 2
    assert {'name', 'input', 'output', 'voxels_1', 'voxels_2'} <= set(table[0])
    for t, r in zip(table, rows):
        assert Path(t['output']).is_file() and t['input'] == r['input'] and int(t['voxels_1']) == r['voxels_1'] >= 0
