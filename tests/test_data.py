"Named datasets, messy-data rules, the tensor set + cache, dihedral maps, transforms and the synthetic stand-ins (fast, CPU; real-data tests skip without data)."
import json, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from medseg_tutor.core import DataError, MedsegError
from medseg_tutor.data.datasets import (BUSIDataset, SIRSTDataset, ISICDataset, KvasirDataset, MedMNISTDataset,
                                        NiftiDataset, audit, _select)
from medseg_tutor.data.folder import FolderSegDataset, DataWarning, read_split, split_names
from medseg_tutor.data.tensors import (TensorSegData, save_cache, load_cache, dihedral, dihedral_ref, random_codes,
                                       DIHEDRAL_INVERSE)
from medseg_tutor.data.transforms import normalize, normalize_stats, resize_pair
from medseg_tutor.data.synthetic import SyntheticLesionDataset, make_example_dataset, example_data, is_synthetic

torch.set_num_threads(1)

def _png(path, arr, mode=None):
    im = Image.fromarray(arr)
    if mode: im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True); im.save(path)

# ---------------------------------------------------------------- real data
@pytest.mark.parametrize('fold', [1, 2, 3])
def test_busi_split_counts(data_dir, fold):
    tr, va = BUSIDataset(data_dir, 'train', fold, size=64), BUSIDataset(data_dir, 'val', fold, size=64)
    assert (len(tr), len(va)) == (452, 195)
    assert not set(tr.names) & set(va.names) and not any(n.startswith('normal') for n in tr.names + va.names)

def test_busi_crlf_names(data_dir):
    raw = (data_dir/'busi'/'splits'/'busi_train1.txt').read_bytes()
    assert b'\r\n' in raw
    names = read_split(data_dir/'busi'/'splits'/'busi_train1.txt')
    assert len(names) == 452 and all('\r' not in n and n == n.strip() for n in names) and any(' (' in n for n in names)

def test_busi_all_and_normal(data_dir):
    assert len(BUSIDataset(data_dir, 'all', size=32)) == 780
    nd = BUSIDataset(data_dir, 'normal', size=32)
    assert len(nd) == 133 and nd[0]['mask'].sum() == 0      # empty masks are kept
    assert len(BUSIDataset(data_dir/'busi', 'val', 2, size=32)) == 195   # the busi folder itself as root

def test_busi_mixed_modes_consistent_channels(data_dir):
    for ch in (3, 1):
        ds = BUSIDataset(data_dir, 'all', size=64, channels=ch)
        for n in ('benign (173)', 'benign (6)', 'benign (10)', 'normal (113)'):   # RGB, RGB, L, RGB
            it = ds[ds.names.index(n)]
            assert it['image'].shape == (ch, 64, 64) and it['image'].dtype == torch.float32
            assert it['mask'].shape == (1, 64, 64) and set(it['mask'].unique().tolist()) <= {0.0, 1.0}
            assert 0 <= it['image'].min() and it['image'].max() <= 1 and it['name'] == n

def test_sirst_split_counts(data_dir):
    want = dict(train=256, val=85, test=86, trainval=341, trainvaltest=427)
    assert {s: len(SIRSTDataset(data_dir, s, size=32)) for s in want} == want

def test_sirst_misc111_resized_once_or_rejected(data_dir):
    ds = SIRSTDataset(data_dir, 'trainvaltest', size=None)
    i = ds.names.index('Misc_111')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        a = ds[i]; ds[i]
    assert sum(issubclass(x.category, DataWarning) for x in w) == 1
    assert a['image'].shape == (3, 220, 325) and a['mask'].shape == (1, 220, 325) and a['mask'].sum() > 0
    with pytest.raises(DataError, match='Misc_111_pixels0.png'):
        SIRSTDataset(data_dir, 'trainvaltest', size=None, on_mismatch='error')[i]

def test_sirst_modes_to_three_channels(data_dir):
    ds = SIRSTDataset(data_dir, 'trainvaltest', size=48)
    for n in ('Misc_23', 'Misc_73', 'Misc_138'):   # palette images
        assert ds[ds.names.index(n)]['image'].shape == (3, 48, 48)
    assert SIRSTDataset(data_dir, 'test', size=48, channels=1)[0]['image'].shape == (1, 48, 48)

def test_kvasir_jpeg_masks_binarised(data_dir):
    ds = KvasirDataset(data_dir, size=64)
    assert len(ds) == 5
    for i in range(5):
        m = ds[i]['mask']; assert set(m.unique().tolist()) == {0.0, 1.0} and 0.03 < m.mean() < 0.5

def test_breastmnist_label_quirk(data_dir):
    ds = MedMNISTDataset('breastmnist', 'train', data_dir)
    assert len(ds) == 546 and ds.labels.shape == (546, 1)
    it = ds[3]; assert it['image'].shape == (1, 28, 28) and it['label'].shape == (1,) and int(it['label'][0]) in (0, 1)
    assert [len(MedMNISTDataset('breastmnist', s, data_dir)) for s in ('val', 'test')] == [78, 156]
    with pytest.raises(DataError, match='breastmnist_64.npz'): MedMNISTDataset('breastmnist', 'train', data_dir, size=64)

def test_real_tensor_set_augmentation_alignment(data_dir):
    ds = BUSIDataset(data_dir, 'val', 1, size=64, channels=1)
    td = TensorSegData.from_dataset(ds.subset(ds.names[:8]), in_channels=1, normalize='none', augment=True)
    td = TensorSegData(td.masks * 255, td.masks, td.names, in_channels=1, normalize='none', augment=True)   # image = mask
    for s in range(5):
        x, y = td.batch(torch.arange(8), torch.Generator().manual_seed(s))
        assert torch.equal(x, y)

# ---------------------------------------------------------------- fabricated folders
def test_missing_mask_names_the_file(tmp_path):
    _png(tmp_path/'img'/'a.png', np.zeros((8, 8), np.uint8)); _png(tmp_path/'img'/'b c.png', np.zeros((8, 8), np.uint8))
    _png(tmp_path/'msk'/'a.png', np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"b c\.png") as e: FolderSegDataset(tmp_path/'img', tmp_path/'msk')
    assert isinstance(e.value, MedsegError)

def test_missing_split_entry_and_split_file(tmp_path):
    _png(tmp_path/'img'/'a.png', np.zeros((8, 8), np.uint8)); _png(tmp_path/'msk'/'a.png', np.zeros((8, 8), np.uint8))
    (tmp_path/'s.txt').write_bytes(b'a\r\nghost\r\n')
    ds = FolderSegDataset(tmp_path/'img', tmp_path/'msk')
    with pytest.raises(DataError, match="ghost"): _select(ds, tmp_path/'s.txt')
    with pytest.raises(DataError, match="nope.txt"): _select(ds, tmp_path/'nope.txt')

def test_empty_dataset_says_what_was_searched(tmp_path):
    (tmp_path/'img').mkdir(); (tmp_path/'msk').mkdir(); (tmp_path/'img'/'notes.txt').write_text('x')
    with pytest.raises(DataError, match=r"no images in .*img.*\.png"): FolderSegDataset(tmp_path/'img', tmp_path/'msk')
    with pytest.raises(DataError, match='not found'): FolderSegDataset(tmp_path/'nothere', tmp_path/'msk')

def test_several_masks_union_and_mask_beside_image(tmp_path):
    m0 = np.zeros((8, 8), np.uint8); m0[:2] = 255; m1 = np.zeros((8, 8), np.uint8); m1[-3:] = 1   # a 0/1 mask too
    _png(tmp_path/'benign (1).png', np.full((8, 8), 90, np.uint8))
    _png(tmp_path/'benign (1)_mask.png', m0, '1'); Image.fromarray(m1).save(tmp_path/'benign (1)_mask_1.png')
    ds = FolderSegDataset(tmp_path, None, mask_suffix='_mask')
    assert ds.names == ['benign (1)'] and ds[0]['mask'].sum() == 40

def test_all_modes_consistent_channels(tmp_path):
    rng = np.random.default_rng(0); rgb = rng.integers(0, 255, (10, 12, 3), np.uint8)
    for mode in ('L', 'RGB', 'RGBA', 'P', '1', 'LA'):
        _png(tmp_path/'img'/f'{mode}.png', rgb, mode)
        _png(tmp_path/'msk'/f'{mode}.png', (rgb[..., 0] > 128).astype(np.uint8) * 255, 'RGB' if mode == 'RGB' else 'L')
    Image.fromarray(rng.integers(0, 4000, (10, 12)).astype(np.uint16)).save(tmp_path/'img'/'I16.png')
    _png(tmp_path/'msk'/'I16.png', np.zeros((10, 12), np.uint8))
    for ch in (1, 3):
        ds = FolderSegDataset(tmp_path/'img', tmp_path/'msk', size=(16, 20), channels=ch)
        assert len(ds) == 7 and {tuple(ds[i]['image'].shape) for i in range(7)} == {(ch, 16, 20)}

def test_mask_size_mismatch_rule(tmp_path):
    _png(tmp_path/'img'/'x.png', np.zeros((10, 20), np.uint8))
    m = np.zeros((20, 40), np.uint8); m[:10, :20] = 255; _png(tmp_path/'msk'/'x.png', m)
    with pytest.warns(DataWarning, match='resizing it'):
        it = FolderSegDataset(tmp_path/'img', tmp_path/'msk', size=None)[0]
    assert it['mask'].shape == (1, 10, 20) and it['mask'][0, :5, :10].all() and it['mask'].sum() == 50
    with pytest.raises(DataError, match=r"x\.png"): FolderSegDataset(tmp_path/'img', tmp_path/'msk', on_mismatch='error')[0]

def test_isic_layout(tmp_path):
    for i in range(5):
        _png(tmp_path/'ISIC2018_Task1-2_Training_Input'/f'ISIC_{i:07d}.jpg', np.full((12, 16, 3), 100, np.uint8))
        _png(tmp_path/'ISIC2018_Task1_Training_GroundTruth'/f'ISIC_{i:07d}_segmentation.png', np.full((12, 16), 255, np.uint8))
    (tmp_path/'ISIC2018_Task1-2_Training_Input'/'LICENSE.txt').write_text('x')
    ds = ISICDataset(tmp_path, size=8)
    assert len(ds) == 5 and ds[0]['mask'].mean() == 1 and ds[0]['image'].shape == (3, 8, 8)
    tr, va = ISICDataset(tmp_path, 'train', val_frac=0.4, seed=1), ISICDataset(tmp_path, 'val', val_frac=0.4, seed=1)
    assert (len(tr), len(va)) == (3, 2) and not set(tr.names) & set(va.names)

def test_seeded_splits_reproducible():
    names = [f"case{i}" for i in range(50)]
    a = split_names(names, 0.2, seed=3); b = split_names(list(reversed(names)), 0.2, seed=3)
    assert a == b and len(a[1]) == 10 and a != split_names(names, 0.2, seed=4)

def test_nifti_dataset_json(tmp_path):
    nib = pytest.importorskip('nibabel')
    (tmp_path/'imagesTr').mkdir(); (tmp_path/'labelsTr').mkdir()
    vol = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4); lab = (vol > 60).astype(np.uint8)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path/'imagesTr'/'c1.nii.gz')
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path/'labelsTr'/'c1.nii.gz')
    (tmp_path/'dataset.json').write_text(json.dumps({'training': [{'image': 'imagesTr/c1.nii.gz', 'label': 'labelsTr/c1.nii.gz'}],
                                                     'test': [{'image': 'imagesTr/c2.nii.gz'}]}))
    it = NiftiDataset(tmp_path, 'dataset.json', section='training', binary=True)[0]
    assert it['image'].shape == (1, 6, 5, 4) and torch.equal(it['image'][0], torch.from_numpy(vol))
    assert torch.equal(it['mask'][0], torch.from_numpy(lab).float())
    with pytest.raises(DataError, match='c2.nii.gz'): NiftiDataset(tmp_path, section='test')
    with pytest.raises(DataError, match='validation'): NiftiDataset(tmp_path, section='validation')

# ---------------------------------------------------------------- cache
def test_cache_roundtrip_and_packed_masks(tmp_path):
    ds = SyntheticLesionDataset(20, size=32, seed=0)
    td = TensorSegData.from_dataset(ds, in_channels=3)
    assert td.images.shape == (20, 1, 32, 32) and td.images.dtype == torch.uint8 and td.masks.dtype == torch.uint8
    p = td.save(tmp_path/'c.npz', splits={'train_idx': range(15), 'val_idx': range(15, 20)})
    with np.load(p) as z: assert z['masks_bits'].nbytes == 20 * 32 * 32 // 8 and str(z['format']) == 'medseg-cache-1'
    c = load_cache(p)
    assert torch.equal(c['images'], td.images) and torch.equal(c['masks'], td.masks) and c['names'] == td.names
    va = TensorSegData.from_cache(p, 'val', in_channels=3)
    x, y = va.batch(torch.tensor([0]))
    assert x.shape == (1, 3, 32, 32) and torch.equal(y[0], ds[15]['mask'])
    with pytest.raises(DataError, match='nope.npz'): load_cache(tmp_path/'nope.npz')
    (tmp_path/'junk.npz').write_bytes(b'junk')
    with pytest.raises(DataError, match='junk.npz'): load_cache(tmp_path/'junk.npz')

def test_dihedral_codes_one_meaning_fast_equals_ref():
    x = torch.arange(25.).reshape(1, 1, 5, 5)
    assert len({tuple(dihedral(x, [c]).flatten().tolist()) for c in range(8)}) == 8
    assert torch.equal(dihedral(x, [4]), x.flip(-1)) and torch.equal(dihedral(x, [1]), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(dihedral(x, [6]), x.flip(-2))
    xb = torch.rand(16, 3, 7, 7); g = random_codes(16, torch.Generator().manual_seed(0))
    assert torch.equal(dihedral(xb, g), dihedral_ref(xb, g))
    for c in range(8): assert torch.equal(dihedral(dihedral(x, [c]), [DIHEDRAL_INVERSE[c]]), x)
    r = torch.rand(4, 1, 4, 6)
    assert torch.equal(dihedral(r, [0, 2, 4, 6]), dihedral_ref(r, [0, 2, 4, 6]))
    with pytest.raises(Exception, match='square'): dihedral(r, [1, 0, 0, 0])

def test_tensor_set_roi_follows_augmentation_and_non_square():
    m = (torch.rand(6, 1, 8, 12) > 0.5).to(torch.uint8); roi = (torch.rand(6, 1, 8, 12) > 0.3).to(torch.uint8)
    td = TensorSegData(m * 255, m, in_channels=1, normalize='none', augment=True, roi=roi * m)
    x, y, r = td.batch(torch.arange(6), torch.Generator().manual_seed(3))
    assert x.shape == (6, 1, 8, 12) and torch.equal(x, y) and bool(((r > 0) <= (y > 0)).all())

def test_normalise_once_and_official_double():
    x = torch.rand(2, 3, 4, 4)
    once = normalize(x)
    assert torch.allclose(once * torch.tensor([0.229, 0.224, 0.225])[:, None, None] + torch.tensor([0.485, 0.456, 0.406])[:, None, None], x, atol=1e-6)
    assert torch.allclose(normalize(x, official_double_norm=True), once / 255)
    m, sd = normalize_stats(3, 'cpu'); assert torch.allclose((x - m) / sd, once)

def test_resize_pair_mask_stays_binary():
    img = torch.rand(3, 37, 53); m = (torch.rand(1, 37, 53) > 0.5).float()
    a, b = resize_pair(img, m, 32)
    assert a.shape == (3, 32, 32) and set(b.unique().tolist()) <= {0.0, 1.0}

# ---------------------------------------------------------------- synthetic
def test_synthetic_deterministic_and_sane():
    a, b = SyntheticLesionDataset(30, 48, seed=7), SyntheticLesionDataset(30, 48, seed=7)
    for i in (0, 13, 29):
        x, y = a[i], b[i]
        assert torch.equal(x['image'], y['image']) and torch.equal(x['mask'], y['mask'])
    assert not torch.equal(a[0]['image'], SyntheticLesionDataset(30, 48, seed=8)[0]['image'])
    darker = [a[i]['image'][a[i]['mask'] > 0].mean() < a[i]['image'][a[i]['mask'] == 0].mean() for i in range(30) if a[i]['mask'].sum() > 0]
    assert len(darker) >= 20 and all(darker)

def test_example_data_stand_ins_in_the_real_layouts(tmp_path, monkeypatch):
    monkeypatch.delenv('MEDSEG_TUTOR_DATA', raising=False); monkeypatch.setenv('MEDSEG_TUTOR_CACHE', str(tmp_path/'cache'))
    b = BUSIDataset(make_example_dataset('busi', tmp_path/'busi', n=8, size=32), 'val', 2, size=32)
    assert len(b) >= 1 and all(b[i]['mask'].sum() > 0 for i in range(len(b)))
    s = SIRSTDataset(make_example_dataset('sirst', tmp_path/'sirst', n=6, size=32), 'test', size=32)
    assert len(s) >= 1
    p = example_data('kvasir', n=3, size=32)
    assert is_synthetic(p) and p == example_data('kvasir', n=3, size=32) and len(KvasirDataset(p, size=32)) == 3
    a = audit(KvasirDataset(p, size=None))
    assert a['n'] == 3 and a['empty_masks'] == 0 and a['modes'] == {'RGB': 3}
    bm = MedMNISTDataset('breastmnist', 'train', make_example_dataset('medmnist', tmp_path/'mm', n=4))
    assert len(bm) == 4 and bm.labels.shape == (4, 1)
    with pytest.raises(DataError, match='unknown'): make_example_dataset('nope', tmp_path/'x')

def test_tensor_set_resized_keeps_everything_but_the_size():
    "TensorSegData.resized: images bilinear (antialiased) uint8, masks and roi nearest, names / normalisation / augmentation kept."
    g = torch.Generator().manual_seed(0)
    ims = torch.randint(0, 256, (3, 1, 32, 32), generator=g, dtype=torch.uint8)
    ms = (torch.rand(3, 1, 32, 32, generator=g) > 0.5).to(torch.uint8); roi = torch.ones_like(ms); roi[..., 24:, :] = 0
    d = TensorSegData(ims, ms, ['a', 'b', 'c'], in_channels=3, normalize='released', augment=True, roi=roi,
                      orig_hw=[(64, 80)] * 3, content_hw=[(24, 32)] * 3)
    r = d.resized(16)
    assert r.hw == (16, 16) and r.images.dtype == torch.uint8 and r.names == ['a', 'b', 'c']
    assert (r.normalize, r.augment, r.in_channels, r.orig_hw, r.content_hw) == ('released', True, 3, d.orig_hw, [(12, 16)] * 3)
    assert torch.equal(r.masks, ms[:, :, ::2, ::2]) and torch.equal(r.roi, roi[:, :, ::2, ::2])     # nearest, exactly
    ramp = TensorSegData((torch.arange(32) * 8).to(torch.uint8).expand(1, 1, 32, 32).contiguous(), ms[:1]).resized(16)
    assert torch.equal(ramp.images[0, 0, :, 1:-1], (torch.arange(1, 15) * 16 + 4).to(torch.uint8).expand(16, 14))   # linear: the value at each new centre
    assert d.resized((32, 32)) is d and d.resized((8, 12)).hw == (8, 12)
    with pytest.raises(DataError): TensorSegData(ims.float(), ms).resized(16)
