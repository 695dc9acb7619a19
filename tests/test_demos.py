"MedMNIST demos: fast-mode runs return sane dicts and learn; missing or broken data files give clear errors."
import json, os
import numpy as np
import pytest
import torch
from medseg_tutor.core import DataError, DataRootError, MedsegError
from medseg_tutor.demos import breastmnist as bm
from medseg_tutor.demos import adrenal3d as ad

torch.set_num_threads(1)


# ---- data loading and errors -------------------------------------------------------------------------------

def test_load_breastmnist_both_layouts(data_dir):
    for root in (data_dir, data_dir / 'medmnist'):     # the data root, or the medmnist folder itself
        d = bm.load_medmnist('BreastMNIST', 28, root)
        assert d['root'] == data_dir / 'medmnist'
        assert [d[s][0].shape for s in ('train', 'val', 'test')] == [(546, 28, 28), (78, 28, 28), (156, 28, 28)]
        # this copy stores labels as (N,), the official file as (N, 1): both come out (N,) int64
        assert d['train'][1].shape == (546,) and d['train'][1].dtype == np.int64 and set(d['train'][1]) == {0, 1}


def test_load_adrenal3d_pooled(data_dir):
    d = ad.load_adrenal3d(data_dir, 32)
    assert d['train'][0].shape == (1188, 1, 32, 32, 32) and d['test'][1].shape == (298,)
    x = d['val'][0]
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    # average pooling keeps the gland volume: mean of the pooled volume == mean of the binary 64³ one
    raw = d['raw']['val'][:4].astype(np.float64) / 255
    assert np.allclose(x[:4].double().mean((1, 2, 3, 4)).numpy(), raw.mean((1, 2, 3)), atol=1e-6)


def test_missing_file_says_which_file_where_and_how(tmp_path):
    with pytest.raises(DataError) as e: bm.load_medmnist('BreastMNIST', 28, tmp_path)
    msg = str(e.value)
    assert 'breastmnist.npz' in msg and str(tmp_path / 'medmnist' / 'breastmnist.npz') in msg
    assert 'download=True' in msg and 'medmnist' in msg
    with pytest.raises(DataError, match=r'adrenalmnist3d_64\.npz'): ad.run_demo(tmp_path, out=None, fast=True, log=None)
    with pytest.raises(DataError, match=r'breastmnist\.npz'): bm.run_demo(tmp_path, out=None, fast=True, log=None)


def test_missing_root_and_no_default(tmp_path, monkeypatch):
    with pytest.raises(DataRootError, match='does not exist'): bm.load_medmnist('BreastMNIST', 28, tmp_path / 'nope')
    # nothing given, no $MEDSEG_TUTOR_DATA, empty medmnist default root: a DataRootError naming the file
    monkeypatch.delenv('MEDSEG_TUTOR_DATA', raising=False)
    import medmnist.info
    monkeypatch.setattr(medmnist.info, 'DEFAULT_ROOT', str(tmp_path))
    with pytest.raises(DataRootError) as e: bm.load_medmnist('BreastMNIST', 28, None)
    assert 'breastmnist.npz' in str(e.value) and 'MEDSEG_TUTOR_DATA' in str(e.value)
    assert isinstance(e.value, MedsegError)


def test_truncated_file_is_a_data_error(tmp_path, data_dir):
    src = np.load(data_dir / 'medmnist' / 'breastmnist.npz')
    np.savez(tmp_path / 'breastmnist.npz', **{k: (v[:10] if k.startswith('train') else v) for k, v in src.items()})
    with pytest.raises(DataError, match='has 10 train images but BreastMNIST has 546'):
        bm.load_medmnist('BreastMNIST', 28, tmp_path)


def test_augmentations():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    a = bm.augment2d(x, g)
    assert a.shape == x.shape and not torch.equal(a, x)
    v = torch.rand(3, 1, 16, 16, 16)
    f = ad.augment3d(v, g, shift=0)                 # flips only: same voxels, moved
    assert torch.allclose(f.sum((1, 2, 3, 4)), v.sum((1, 2, 3, 4)))
    assert torch.allclose(f.flatten(1).sort(1).values, v.flatten(1).sort(1).values)


# ---- fast-mode demos ---------------------------------------------------------------------------------------

def test_breastmnist_fast_demo(data_dir, tmp_path):
    r = bm.run_demo(data_dir, out=tmp_path, fast=True, device='cpu', log=None)
    assert r['dataset'] == 'breastmnist' and r['fast'] and r['epochs'] == 3
    for k in ('test_acc', 'test_auc', 'val_acc', 'val_auc'): assert 0 <= r[k] <= 1, k
    assert r['last_epoch_loss'] < r['first_epoch_loss'], 'training loss should fall'
    assert r['test_auc'] > 0.5, 'three epochs should already beat chance on test AUC'
    assert np.allclose(np.sum(r['test_probs'], 1), 1, atol=1e-5) and len(r['test_labels']) == 156
    for f in ('metrics.json', 'curves.png', 'confusion.png', 'misclassified.png', 'run/best.pt', 'run/log.csv'): assert (tmp_path / f).is_file(), f
    m = json.loads((tmp_path / 'metrics.json').read_text())
    assert m['test_acc'] == pytest.approx(r['test_acc'])
    json.dumps({k: v for k, v in r.items()})       # the whole result is JSON-serialisable (CLI)


def test_adrenal3d_fast_demo(data_dir, tmp_path):
    r = ad.run_demo(data_dir, out=tmp_path, fast=True, device='cpu', log=None)
    assert r['dataset'] == 'adrenalmnist3d' and r['fast'] and r['seeds'] == [0]
    assert r['pretrain_last_loss'] < r['pretrain_first_loss'], 'MambaMIM loss should fall'
    for arm in ('pretrained', 'scratch'):
        assert all(0 <= v <= 1 for v in r[f'{arm}_acc'] + r[f'{arm}_auc'])
        assert r['finetune_last_loss'][arm][0] < r['finetune_first_loss'][arm][0], f'{arm}: training loss should fall'
    assert set(r['test_recon_loss']) == {0.25, 0.5, 0.75}
    assert '| pretrained |' in r['table'] and '| scratch |' in r['table']
    for f in ('metrics.json', 'results.md', 'reconstructions.png', 'pretrain_loss.png', 'finetune_curves.png'):
        assert (tmp_path / f).is_file(), f
    json.dumps(r)


# ---- no second loop: the demos train through the engine and resume exactly ----------------------------------

def test_classifier_runs_through_the_engine_and_resumes_exactly(tmp_path):
    "fit_classifier's run writes the engine's log.csv columns, and a stopped run resumed with its callbacks (OneCycle,\n"
    "EMA, StepLosses) ends with the same weights and the same EMA as one that never stopped."
    from medseg_tutor.train.engine import Trainer, TrainConfig, StopTraining, read_csv
    from medseg_tutor.train.checkpoint import load_checkpoint
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 1, 28, 28, generator=g), torch.randint(0, 2, (24,), generator=g)
    ev = lambda t, d: {'auc': float((t.model(d.x).argmax(-1) == d.y).float().mean()), 'acc': 0.5}
    def run(out, extra=(), resume=False):
        torch.manual_seed(0)
        cbs = [bm.OneCycle(3e-3, 0.2), bm.EMA(0.9), *extra]
        cfg = TrainConfig(epochs=3, batch_size=8, optimizer='adamw', lr=3e-3, schedule='const', select_metric='auc', progress=False, verbose=False)
        tr = Trainer(bm.MobileUtrClassifier(dims=(8, 16, 16), heads=2), bm.ClassData(x, y, bm.augment2d), bm.ClassData(x, y), cfg,
                     loss_fn=torch.nn.CrossEntropyLoss(label_smoothing=0.1), step=bm.cls_step, evaluate=ev, callbacks=cbs, out=out, device='cpu')
        tr.fit(resume=resume); return cbs
    a = run(tmp_path/'a')
    def stop(t):
        if t.epoch == 1: raise StopTraining
    with pytest.raises(StopTraining): run(tmp_path/'b', [stop])
    b = run(tmp_path/'b', resume=True)
    wa, wb = load_checkpoint(tmp_path/'a'/'last.pt')['model'], load_checkpoint(tmp_path/'b'/'last.pt')['model']
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert all(torch.equal(a[1].state[k], b[1].state[k]) for k in a[1].state)
    assert {'epoch', 'train_loss', 'train_acc', 'lr', 'epoch_s', 'val_auc'} <= set(read_csv(tmp_path/'a'/'log.csv')[0])

def test_mim_pretraining_runs_through_the_engine(tmp_path):
    from medseg_tutor.train.engine import read_csv
    x = (torch.rand(8, 1, 32, 32, 32) > 0.7).float()
    mim, h = ad.pretrain_mambamim(x, epochs=1, bs=4, device='cpu', log=None, out=tmp_path)
    assert h['steps'] == 2 and len(h['step_loss']) == 2 and (tmp_path/'best.pt').is_file()
    assert {'epoch', 'train_loss', 'lr', 'epoch_s'} <= set(read_csv(tmp_path/'log.csv')[0])
