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
        for k, v in image_metrics_ref(P[i].numpy(), G[i].numpy()).items():
            assert (math.isnan(v) and math.isnan(m[k][i].item())) or m[k][i].item() == pytest.approx(v, abs=1e-12)
    Pm, Gm = P[:, None].float(), G[:, None].float()
    dice_m = mm.DiceMetric(include_background=True, reduction='none', ignore_empty=False)(Pm, Gm)[:, 0]
    iou_m = mm.MeanIoU(include_background=True, reduction='none', ignore_empty=False)(Pm, Gm)[:, 0]
    assert torch.allclose(m['dice'].float(), dice_m.float(), atol=1e-6)
    assert torch.allclose(m['iou'].float(), iou_m.float(), atol=1e-6)
    cm = mm.get_confusion_matrix(Pm, Gm)   # (B, 1, 4): tp, fp, tn, fn
    se_m = mm.compute_confusion_matrix_metric('sensitivity', cm)[:, 0]; pc_m = mm.compute_confusion_matrix_metric('precision', cm)[:, 0]
    for ours, theirs in ((m['sensitivity'], se_m), (m['precision'], pc_m)):   # undefined where MONAI says so, too
        assert torch.equal(torch.isnan(ours), torch.isnan(theirs))
        ok = ~torch.isnan(theirs); assert torch.allclose(ours[ok].float(), theirs[ok].float(), atol=1e-6)

def test_empty_mask_convention():
    z = torch.zeros(3, 1, 8, 8, dtype=torch.bool); g = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    z[1, :, 2:4, 2:4] = True; g[2, :, 2:4, 2:4] = True   # 0: both empty, 1: false alarm, 2: missed lesion
    m = overlap_metrics(z, g)
    row = lambda i: [m[k][i].item() for k in ('iou', 'dice', 'f1', 'sensitivity', 'precision')]
    same = lambda a, b: all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))
    nan = float('nan')
    assert same(row(0), [1, 1, 1, nan, nan])      # both empty: correct, SE and PC undefined
    assert same(row(1), [0, 0, 0, nan, 0])        # false alarm: SE undefined (nothing to find)
    assert same(row(2), [0, 0, 0, 0, nan])        # missed lesion: PC undefined (nothing predicted), never 1.0
    sm = SegMetrics(); sm.update(z.float(), g.float(), names=list('abc')); r = sm.compute(pooled=True)
    assert (r['n'], r['n_empty_target'], r['n_empty_pred'], r['n_empty_both'], r['n_missed'], r['n_false_alarm']) == (3, 2, 2, 1, 1, 1)
    assert r['sensitivity'] == 0 and r['sensitivity_n'] == 1 and r['precision'] == 0 and r['precision_n'] == 1
    assert r['dice'] == pytest.approx(1 / 3) and r['dice_nonempty'] == 0 and math.isnan(SegMetrics().compute()['dice'])
    assert r['precision_pooled'] == 0 and r['sensitivity_pooled'] == 0
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
        v = np.array([x[k] for x in refs]); v = v[~np.isnan(v)]
        assert r[k] == pytest.approx(v.mean(), abs=1e-12) and r[f'{k}_std'] == pytest.approx(v.std(ddof=1), abs=1e-12)
    assert r['sensitivity_n'] == 6 and r['n_empty_target'] == 1
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

# ---------------------------------------------------------------- regions of interest (issue 14)
def test_losses_with_roi_hand_values_and_zero_gradient_outside():
    roi = torch.zeros(1, 1, 4, 4); roi[..., :2] = 1                     # left half: 8 pixels
    t = torch.zeros(1, 1, 4, 4); t[0, 0, 0, :2] = 1; t[0, 0, 3, 2:] = 1   # 2 target pixels inside, 2 outside
    z = torch.zeros(1, 1, 4, 4, requires_grad=True)                      # p = 0.5 everywhere
    dice = 1 - (2 * 1 + 1e-5) / (4 + 2 + 1e-5)                           # inside: sum(pt) = 1, sum(p) = 4, sum(t) = 2
    assert dice_loss(z, t, roi=roi).item() == pytest.approx(dice, abs=1e-6)
    assert dice_loss_ref(z, t, roi=roi).item() == pytest.approx(dice, abs=1e-6)
    L = BCEDiceLoss()(z, t, roi=roi)
    assert L.item() == pytest.approx(0.5 * math.log(2) + dice, abs=1e-5)
    g, = torch.autograd.grad(L, z)
    assert (g[..., 2:] == 0).all() and (g[..., :2] != 0).all()
    assert DiceCELoss()(z, t, roi=roi).item() == pytest.approx(math.log(2) + dice, abs=1e-5)
    # K classes: logits outside the ROI do not matter
    zc = torch.randn(2, 3, 6, 6); y = torch.randint(0, 3, (2, 6, 6)); r = torch.zeros(2, 1, 6, 6); r[..., 1:5, 1:5] = 1
    zc2 = zc.clone(); zc2[..., 0, :] = 100.
    assert torch.allclose(DiceCELoss()(zc, y, roi=r), DiceCELoss()(zc2, y, roi=r))
    assert torch.allclose(DiceCELoss()(zc, y, roi=torch.ones(2, 1, 6, 6)), DiceCELoss()(zc, y))
    with pytest.raises(ShapeError, match='roi'): BCEDiceLoss()(z, t, roi=torch.ones(1, 2, 3))

def test_metrics_with_roi_hand_values():
    P = torch.zeros(1, 1, 4, 4, dtype=torch.bool); G = torch.zeros_like(P); R = torch.zeros_like(P); R[..., :2] = True
    G[0, 0, 0, 0] = G[0, 0, 1, 0] = True                     # 2 target pixels, both in the ROI
    P[0, 0, 0, 0] = P[0, 0, 2, 1] = True; P[0, 0, 0:3, 3] = True   # 1 TP, 1 FP inside, 3 FP outside
    sm = SegMetrics(from_logits=False, hd95=False); sm.update(P.float(), G.float(), R.float())
    r = sm.compute()                                          # inside: TP 1, FP 1, FN 1
    assert (r['iou'], r['dice'], r['sensitivity'], r['precision']) == pytest.approx((1 / 3, 1 / 2, 1 / 2, 1 / 2))
    sm = SegMetrics(from_logits=False, hd95=False); sm.update(P.float(), G.float())
    r = sm.compute()                                          # all pixels: TP 1, FP 4, FN 1
    assert (r['iou'], r['dice'], r['sensitivity'], r['precision']) == pytest.approx((1 / 6, 2 / 7, 1 / 2, 1 / 5))
    assert image_metrics_ref(P[0, 0].numpy(), G[0, 0].numpy(), R[0, 0].numpy())['iou'] == pytest.approx(1 / 3)
    # HD95 honours the ROI too: a far false positive outside it does not count
    g = np.zeros((16, 16), bool); g[6:10, 6:10] = True; p = g.copy(); p[0, 15] = True
    roi = np.ones((16, 16), bool); roi[0] = False
    sm = SegMetrics(from_logits=False); sm.update(torch.from_numpy(p)[None, None].float(), torch.from_numpy(g)[None, None].float(), torch.from_numpy(roi)[None, None].float())
    assert sm.compute()['hd95'] == 0

def test_multiclass_metrics_per_class_hand_values():
    from medseg_tutor.metrics import MultiClassSegMetrics, make_seg_metrics
    y = torch.zeros(2, 1, 4, 4, dtype=torch.long); y[0, 0, :2, :2] = 1; y[0, 0, 2:, 2:] = 2; y[1, 0, :2, :2] = 1
    pred = y.clone(); pred[0, 0, 3, 2:] = 0                   # class 2 on image 0: TP 2, FN 2 -> Dice 2/3, SE 1/2
    m = MultiClassSegMetrics(3); m.update(F.one_hot(pred[:, 0], 3).movedim(-1, 1).float(), y); r = m.compute()
    assert r['dice_1'] == 1 and r['dice_2'] == pytest.approx((2 / 3 + 1) / 2) and r['dice'] == pytest.approx((1 + 5 / 6) / 2)
    assert r['sensitivity_2'] == pytest.approx(0.5) and r['precision_2'] == 1 and r['n'] == 2
    roi = torch.ones(2, 1, 4, 4); roi[0, 0, 3] = 0
    m = make_seg_metrics(3, hd95=False); m.update(pred, y, roi); assert m.compute()['dice_2'] == 1
    with pytest.raises(ShapeError): MultiClassSegMetrics(1)
