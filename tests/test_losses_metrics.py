"Losses and metrics: hand-computed values and cross-checks against independent implementations (MONAI, scipy, brute force)."
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from medseg_tutor.core import ShapeError
from medseg_tutor.losses import BCEDiceLoss, DiceCELoss, dice_loss, dice_loss_ref
from medseg_tutor.metrics import (SegMetrics, overlap_metrics, hd95, hd95_ref, image_metrics_ref, official_iou_score,
                                  aggregate, binarize)

torch.set_num_threads(1)

def _blobs(rng, shape, n, p=0.97, it=2):
    from scipy.ndimage import binary_dilation
    return np.stack([binary_dilation(rng.random(shape) > p, iterations=it) for _ in range(n)])

# ---------------------------------------------------------------- losses
def test_dice_loss_hand_values():
    t = torch.zeros(1, 1, 4, 4); t[..., :2, :2] = 1
    # p = 0.5 everywhere: Dice = (2*2 + s) / (8 + 4 + s)
    assert dice_loss(torch.zeros(1, 1, 4, 4), t).item() == pytest.approx(1 - (4 + 1e-5) / (12 + 1e-5), abs=1e-6)
    # perfect prediction -> 0; all-background prediction on an empty target -> 0 (smoothing)
    assert dice_loss(torch.where(t > 0, 50., -50.), t).item() == pytest.approx(0, abs=1e-6)
    assert dice_loss(torch.full((1, 1, 4, 4), -50.), torch.zeros(1, 1, 4, 4)).item() == pytest.approx(0, abs=1e-6)
    # per-sample mean, not pooled: one perfect and one all-wrong image -> 0.5
    z = torch.stack([torch.where(t[0] > 0, 50., -50.), torch.where(t[0] > 0, -50., 50.)])
    assert dice_loss(z, t.expand(2, -1, -1, -1)).item() == pytest.approx(0.5, abs=1e-5)

def test_bce_dice_hand_value_and_weights():
    t = torch.zeros(1, 1, 4, 4); t[..., :2, :2] = 1
    assert BCEDiceLoss()(torch.zeros(1, 1, 4, 4), t).item() == pytest.approx(0.5 * math.log(2) + 2 / 3, abs=1e-5)
    assert BCEDiceLoss(1.0, 0.0)(torch.zeros(1, 1, 4, 4), t).item() == pytest.approx(math.log(2), abs=1e-6)

def test_dice_loss_matches_reference_values_and_grads():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 1, 9, 7, generator=g, dtype=torch.float64, requires_grad=True)
    t = (torch.rand(5, 1, 9, 7, generator=g) > 0.6).double()
    a, r = dice_loss(z, t), dice_loss_ref(z, t)
    (ga,), (gr,) = torch.autograd.grad(a, z), torch.autograd.grad(r, z)
    assert torch.allclose(a.double(), r.double(), atol=1e-6) and torch.allclose(ga, gr, atol=1e-8)

def test_bce_dice_matches_monai():
    monai_losses = pytest.importorskip('monai.losses')
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, 1, 16, 16, generator=g); t = (torch.rand(4, 1, 16, 16, generator=g) > 0.7).float()
    # MONAI DiceLoss(sigmoid, per-sample, smooth 1e-5 num/den) + BCE; our weights 1, 1
    d = monai_losses.DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5, batch=False)(z, t)
    assert dice_loss(z, t).item() == pytest.approx(d.item(), abs=1e-6)
    ref = 0.5 * F.binary_cross_entropy_with_logits(z, t) + d
    assert BCEDiceLoss()(z, t).item() == pytest.approx(ref.item(), abs=1e-6)

def test_dice_ce_matches_monai_multiclass():
    monai_losses = pytest.importorskip('monai.losses')
    g = torch.Generator().manual_seed(2)
    z = torch.randn(3, 4, 8, 8, generator=g); y = torch.randint(0, 4, (3, 1, 8, 8), generator=g)
    m = monai_losses.DiceCELoss(to_onehot_y=True, softmax=True)(z, y)
    assert DiceCELoss()(z, y).item() == pytest.approx(m.item(), abs=1e-5)
    assert DiceCELoss()(z, y[:, 0]).item() == pytest.approx(m.item(), abs=1e-5)

def test_loss_shape_errors():
    with pytest.raises(ShapeError): BCEDiceLoss()(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ShapeError): DiceCELoss()(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 4, dtype=torch.long))

# ---------------------------------------------------------------- metrics
def test_overlap_metrics_vs_reference_and_monai():
    mm = pytest.importorskip('monai.metrics')
    rng = np.random.default_rng(0)
    P = torch.from_numpy(_blobs(rng, (20, 20), 12)); G = torch.from_numpy(_blobs(rng, (20, 20), 12))
    P[0] = G[0]; P[1] = False
    m = overlap_metrics(P, G)
    for i in range(12):
        for k, v in image_metrics_ref(P[i].numpy(), G[i].numpy()).items(): assert m[k][i].item() == pytest.approx(v, abs=1e-12)
    Pm, Gm = P[:, None].float(), G[:, None].float()
    dice_m = mm.DiceMetric(include_background=True, reduction='none', ignore_empty=False)(Pm, Gm)[:, 0]
    iou_m = mm.MeanIoU(include_background=True, reduction='none', ignore_empty=False)(Pm, Gm)[:, 0]
    assert torch.allclose(m['dice'].float(), dice_m.float(), atol=1e-6)
    assert torch.allclose(m['iou'].float(), iou_m.float(), atol=1e-6)
    cm = mm.get_confusion_matrix(Pm, Gm)   # (B, 1, 4): tp, fp, tn, fn
    se_m = mm.compute_confusion_matrix_metric('sensitivity', cm)[:, 0]; pc_m = mm.compute_confusion_matrix_metric('precision', cm)[:, 0]
    ok = ~torch.isnan(se_m)
    assert torch.allclose(m['sensitivity'][ok].float(), se_m[ok].float(), atol=1e-6)
    ok = ~torch.isnan(pc_m)
    assert torch.allclose(m['precision'][ok].float(), pc_m[ok].float(), atol=1e-6)

def test_empty_mask_convention():
    z = torch.zeros(3, 1, 8, 8, dtype=torch.bool); g = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    z[1, :, 2:4, 2:4] = True; g[2, :, 2:4, 2:4] = True   # 0: both empty, 1: false alarm, 2: missed lesion
    m = overlap_metrics(z, g)
    assert [m[k][0].item() for k in ('iou', 'dice', 'f1', 'sensitivity', 'precision')] == [1, 1, 1, 1, 1]
    assert [m[k][1].item() for k in ('iou', 'dice', 'f1', 'sensitivity', 'precision')] == [0, 0, 0, 1, 0]
    assert [m[k][2].item() for k in ('iou', 'dice', 'f1', 'sensitivity', 'precision')] == [0, 0, 0, 0, 1]
    assert hd95(z[0, 0], g[0, 0]) == 0.0
    assert hd95(z[1, 0], g[1, 0]) == pytest.approx(8 * math.sqrt(2))
    assert math.isnan(hd95(z[2, 0], g[2, 0], empty='nan'))
    # the released code's smoothed IoU agrees on the empty cases
    for i, want in enumerate((1, 0, 0)):
        assert official_iou_score(torch.where(z[i:i+1], 9., -9.), g[i:i+1].float())['iou'] == pytest.approx(want, abs=1e-4)

@pytest.mark.parametrize('spacing', [None, (0.7, 1.3)])
def test_hd95_vs_monai_scipy_and_bruteforce(spacing):
    mm = pytest.importorskip('monai.metrics')
    rng = np.random.default_rng(3)
    P, G = _blobs(rng, (32, 28), 8), _blobs(rng, (32, 28), 8)
    ours = np.array([hd95(P[i], G[i], spacing) for i in range(8)])
    brute = np.array([hd95_ref(P[i], G[i], spacing) for i in range(8)])
    kw = {} if spacing is None else {'spacing': list(spacing)}
    mon = mm.compute_hausdorff_distance(torch.from_numpy(P[:, None]).float(), torch.from_numpy(G[:, None]).float(),
                                        include_background=True, percentile=95, **kw)[:, 0].numpy()
    assert np.allclose(ours, brute, atol=1e-9)
    assert np.allclose(ours, mon, atol=1e-4), (ours, mon)

def test_hd95_3d_and_shift():
    a = np.zeros((10, 12, 14), bool); a[3:7, 3:8, 4:9] = True
    assert hd95(a, np.roll(a, 2, 2)) == pytest.approx(2.0)
    assert hd95(a, a) == 0.0
    assert hd95(a, np.roll(a, 2, 2)) == pytest.approx(hd95_ref(a, np.roll(a, 2, 2)))

def test_segmetrics_accumulates_per_image():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(7, 1, 12, 12, generator=g) * 3; t = (torch.rand(7, 1, 12, 12, generator=g) > 0.6).float(); t[0] = 0
    sm = SegMetrics()
    sm.update(z[:3], t[:3]); sm.update(torch.sigmoid(z[3:]), t[3:], names=list('defg'))
    r = sm.compute(pooled=True)
    refs = [image_metrics_ref(z[i, 0].numpy() > 0, t[i, 0].numpy() > 0) for i in range(7)]
    for k in ('iou', 'dice', 'f1', 'sensitivity', 'precision'):
        assert r[k] == pytest.approx(np.mean([x[k] for x in refs]), abs=1e-12)
        assert r[f'{k}_std'] == pytest.approx(np.std([x[k] for x in refs], ddof=1), abs=1e-12)
    assert r['hd95'] == pytest.approx(np.mean([hd95_ref(z[i, 0].numpy() > 0, t[i, 0].numpy() > 0) for i in range(7)]))
    assert r['n'] == 7 and sm.per_image['name'][-4:] == list('defg')
    assert r['iou_pooled'] == pytest.approx(official_iou_score(z, t)['iou'], abs=1e-4)
    sm.reset(); assert len(sm) == 0
    with pytest.raises(ShapeError): sm.update(z, t[:, 0])

def test_threshold_and_logits():
    assert torch.equal(binarize(torch.tensor([0.3, 0.7]), 0.5), torch.tensor([False, True]))
    assert torch.equal(binarize(torch.tensor([-2.0, 0.5]), 0.5), torch.tensor([False, True]))
    assert torch.equal(binarize(torch.tensor([0.0, 1.0]), 0.8, from_logits=True), torch.tensor([False, False]))
    assert aggregate([1.0, float('nan'), 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
