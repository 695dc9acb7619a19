"Own data (issue 14): pairing, mask rules, ROI, sizes, datalists and the CLI options, on small folders built here."
import argparse, json, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from medseg_tutor.core import DataError
from medseg_tutor.data.folder import (FolderSegDataset, read_datalist, read_split, read_image, read_mask, load_own_data,
                                      read_for_model, resize_back, add_data_args, data_from_args, pair_files, DataWarning)
from medseg_tutor.data.tensors import TensorSegData

def _save(a, path, mode=None, **kw):
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, mode).save(path, **kw); return path

def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r

# ---------------------------------------------------------------- pairing
def test_retina_like_tiff_images_gif_masks_other_names_and_fov(tmp_path):
    "DRIVE-like: 21_training.tif + 21_manual1.gif + 21_training_mask.gif (field of view)."
    for k in (21, 22, 23):
        img = np.stack([np.full((40, 56), 60 + k, np.uint8)] * 3, -1)
        _save(img, tmp_path/'images'/f'{k}_training.tif')
        _save((_disc(40, 56, 20, 28, 6) * 255).astype(np.uint8), tmp_path/'manual'/f'{k}_manual1.gif')
        _save((_disc(40, 56, 20, 28, 18) * 255).astype(np.uint8), tmp_path/'fov'/f'{k}_training_mask.gif')
    with pytest.raises(DataError, match=r"no masks for 3 of 3 images.*21_training.*mask-suffix or --pair-regex"):
        FolderSegDataset(tmp_path/'images', tmp_path/'manual')
    ds = FolderSegDataset(tmp_path/'images', tmp_path/'manual', pair_regex=r'^(\d+)_', roi=tmp_path/'fov')
    assert ds.names == ['21_training', '22_training', '23_training'] and ds.channels == 3
    img, m, roi = ds.read(0)
    assert img.shape == (40, 56, 3) and m.sum() == _disc(40, 56, 20, 28, 6).sum() and roi.sum() == _disc(40, 56, 20, 28, 18).sum()
    # the image-stem + suffix rule works too for the FOV masks
    ds2 = FolderSegDataset(tmp_path/'images', tmp_path/'manual', pair_regex=r'^(\d+)_', roi=tmp_path/'fov', roi_suffix='_mask')
    assert np.array_equal(ds2.read(1)[2], roi)

def test_mask_suffix_multi_masks_and_same_folder(tmp_path):
    _save(np.zeros((8, 8), np.uint8), tmp_path/'a.png')
    a = np.zeros((8, 8), np.uint8); a[:2] = 255; b = np.zeros((8, 8), np.uint8); b[-2:] = 255
    _save(a, tmp_path/'a_mask.png'); _save(b, tmp_path/'a_mask_1.png')
    ds = FolderSegDataset(tmp_path, mask_suffix='_mask')
    assert ds.names == ['a'] and ds.read(0)[1].sum() == 32            # union of the two masks
    with pytest.raises(DataError, match='suffix'): FolderSegDataset(tmp_path)

def test_same_stem_two_extensions_keep_both_names(tmp_path):
    _save(np.zeros((8, 8), np.uint8), tmp_path/'i'/'a.png'); _save(np.zeros((8, 8, 3), np.uint8), tmp_path/'i'/'a.jpg')
    _save(np.full((8, 8), 255, np.uint8), tmp_path/'m'/'a.png')
    assert sorted(FolderSegDataset(tmp_path/'i', tmp_path/'m').names) == ['a.jpg', 'a.png']

def test_empty_and_missing_and_unreadable(tmp_path):
    (tmp_path/'e').mkdir(); (tmp_path/'m').mkdir()
    with pytest.raises(DataError, match='no images'): FolderSegDataset(tmp_path/'e', tmp_path/'m')
    with pytest.raises(DataError, match='not found'): FolderSegDataset(tmp_path/'nope', tmp_path/'m')
    (tmp_path/'e'/'x.png').write_bytes(b'not a png'); _save(np.zeros((4, 4), np.uint8), tmp_path/'m'/'x.png')
    with pytest.raises(DataError, match=r"x\.png"): FolderSegDataset(tmp_path/'e', tmp_path/'m')

# ---------------------------------------------------------------- mask rules
def test_mask_rules_binary_inverted_labels_palette_16bit_alpha_jpeg(tmp_path):
    base = np.zeros((6, 6), np.uint8); base[1:3, 1:4] = 1                  # 6 foreground pixels
    # any non-zero value is foreground, not > 127
    assert read_mask(_save(base * 1, tmp_path/'ones.png')).sum() == 6
    assert read_mask(_save(base * 100, tmp_path/'v100.png'), threshold=127, warn=False).sum() == 0
    # inverted (membranes marked 0 on 255)
    assert read_mask(_save((1 - base) * 255, tmp_path/'inv.png'), invert=True).sum() == 6
    # label-valued masks {0, 1, 2} with a label map; a value it does not list is an error
    lab = base.copy(); lab[4:, 4:] = 2
    out = read_mask(_save(lab, tmp_path/'lab.png'), label_map='0:0,1:1,2:2')
    assert (out == 1).sum() == 6 and (out == 2).sum() == 4
    assert read_mask(tmp_path/'lab.png', label_map={0: 0, 1: 1, 2: 1}).max() == 1
    with pytest.raises(DataError, match=r'\[2\]'): read_mask(tmp_path/'lab.png', label_map='0:0,1:1')
    # a palette mask with colours (VOC-like): the palette index is the value
    p = Image.fromarray(base, 'P'); p.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762); p.save(tmp_path/'pal.png')
    assert read_mask(tmp_path/'pal.png').sum() == 6            # luminance of (128,0,0) is 38: a 127 threshold lost it
    # a grey-palette GIF whose index order is not the grey order: the grey level counts
    g = Image.fromarray((1 - base).astype(np.uint8), 'P'); g.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762); g.save(tmp_path/'g.gif')
    assert read_mask(tmp_path/'g.gif').sum() == 6
    # 16-bit masks with values {0, 100}
    Image.fromarray((base * 100).astype(np.uint16)).save(tmp_path/'m16.png')
    assert Image.open(tmp_path/'m16.png').mode.startswith('I') and read_mask(tmp_path/'m16.png').sum() == 6
    assert read_mask(tmp_path/'m16.png', threshold=50).sum() == 6 and read_mask(tmp_path/'m16.png', threshold=100, warn=False).sum() == 0
    # an alpha-channel mask: black colour, the shape in alpha
    rgba = np.zeros((6, 6, 4), np.uint8); rgba[..., 3] = base * 255
    assert read_mask(_save(rgba, tmp_path/'alpha.png')).sum() == 6
    # lossy JPEG masks: > 127 by default (JPEG noise is not foreground)
    big = np.zeros((32, 32), np.uint8); big[8:24, 8:24] = 255
    mj = read_mask(_save(big, tmp_path/'mj.jpg', quality=50))
    assert abs(int(mj.sum()) - 256) < 40 and mj[0, 0] == 0
    # all background although the file varies: a warning
    with pytest.warns(DataWarning, match='all background'): read_mask(tmp_path/'v100.png', threshold=200)

def test_16bit_tiff_images_rescaled_the_same_everywhere(tmp_path):
    a = np.linspace(1000, 3000, 48, dtype=np.float64).reshape(6, 8).astype(np.uint16)
    Image.fromarray(a).save(tmp_path/'x.tif')
    g = read_image(tmp_path/'x.tif', 1)
    assert g.dtype == np.uint8 and g.min() == 0 and g.max() == 255 and g.shape == (6, 8, 1)
    assert np.array_equal(read_image(tmp_path/'x.tif', 3)[..., 0], g[..., 0])
    _save(np.full((6, 8), 255, np.uint8), tmp_path/'m'/'x.png'); (tmp_path/'i').mkdir(); (tmp_path/'x.tif').rename(tmp_path/'i'/'x.tif')
    ds = FolderSegDataset(tmp_path/'i', tmp_path/'m')
    x, info = read_for_model(tmp_path/'i'/'x.tif', {**ds.preprocess, 'normalize': 'none'})
    assert ds.channels == 1 and torch.equal((x[0, :, :6, :8] * 255).round().to(torch.uint8), torch.from_numpy(g).permute(2, 0, 1))

def test_rgba_and_grey_images_channels(tmp_path):
    _save(np.zeros((8, 8, 4), np.uint8) + 9, tmp_path/'i'/'a.png'); _save(np.zeros((8, 8), np.uint8) + 9, tmp_path/'i'/'b.png')
    for n in 'ab': _save(np.full((8, 8), 255, np.uint8), tmp_path/'m'/f'{n}.png')
    ds = FolderSegDataset(tmp_path/'i', tmp_path/'m')
    assert ds.channels == 3 and ds.read(0)[0].shape == (8, 8, 3) and ds.read(1)[0].shape == (8, 8, 3)
    assert FolderSegDataset(tmp_path/'i', tmp_path/'m', channels=1).read(0)[0].shape == (8, 8, 1)

# ---------------------------------------------------------------- sizes
def test_size_rules_non_square_pad_and_back(tmp_path):
    _save(np.full((30, 50), 200, np.uint8), tmp_path/'i'/'w.png'); _save((_disc(30, 50, 15, 25, 8) * 255).astype(np.uint8), tmp_path/'m'/'w.png')
    _save(np.full((50, 20), 100, np.uint8), tmp_path/'i'/'t.png'); _save(np.full((50, 20), 255, np.uint8), tmp_path/'m'/'t.png')
    ds = FolderSegDataset(tmp_path/'i', tmp_path/'m', size=40)          # longer edge 40, aspect kept, pad to 16
    assert ds.orig_hw == [(50, 20), (30, 50)] and ds.content_hw == [(40, 16), (24, 40)]
    img, m, roi = ds.load(1)
    assert img.shape[:2] == (32, 48) and roi[:24, :40].all() and not roi[24:].any() and not roi[:, 40:].any()
    td = ds.to_tensors()
    assert td.images.shape == (2, 1, 48, 48) and td.roi is not None and int(td.roi[0].sum()) == 40 * 16
    assert td.orig_hw == [(50, 20), (30, 50)] and td.content_hw == ds.content_hw and td.dataset is ds
    # a model that predicts the mask on the canvas maps back exactly to the image's own size
    back = resize_back(td.masks[1:2].float(), td.content_hw[1], td.orig_hw[1])
    assert back.shape == (1, 1, 30, 50) and ((back > 0.5).float()[0, 0].numpy() == _disc(30, 50, 15, 25, 8)).mean() > 0.97
    fx = FolderSegDataset(tmp_path/'i', tmp_path/'m', size=(32, 32))
    assert fx.load(0)[0].shape[:2] == (32, 32) and fx.load(0)[2] is None and len(fx.load_uint8(0)) == 2
    with pytest.raises(DataError): FolderSegDataset(tmp_path/'i', tmp_path/'m', size=(1, 2, 3))

def test_mask_size_mismatch_resized_with_warning_or_error(tmp_path):
    _save(np.zeros((10, 12), np.uint8), tmp_path/'i'/'a.png'); _save(np.full((20, 24), 255, np.uint8), tmp_path/'m'/'a.png')
    with pytest.warns(DataWarning, match='24x20'): assert FolderSegDataset(tmp_path/'i', tmp_path/'m').read(0)[1].shape == (10, 12)
    with pytest.raises(DataError, match='24x20'): FolderSegDataset(tmp_path/'i', tmp_path/'m', on_mismatch='error').read(0)

# ---------------------------------------------------------------- datalists, splits, load_own_data
def _set(tmp_path, n=6):
    for k in range(n):
        _save(np.full((16, 16), 20 * k, np.uint8), tmp_path/'img'/f's{k}.png')
        _save((_disc(16, 16, 8, 8, 2 + k % 3) * 255).astype(np.uint8), tmp_path/'lab'/f's{k}.png')

def test_datalist_json_and_csv(tmp_path):
    _set(tmp_path)
    dl = {'training': [{'image': f'img/s{k}.png', 'label': f'lab/s{k}.png'} for k in range(4)],
          'validation': [{'image': 'img/s4.png', 'label': 'lab/s4.png'}], 'test': [{'image': 'img/s5.png', 'label': 'lab/s5.png'}]}
    (tmp_path/'d.json').write_text(json.dumps(dl))
    r = read_datalist(tmp_path/'d.json')
    assert [len(r[k]) for k in ('training', 'validation', 'test')] == [4, 1, 1] and r['training'][0]['image'] == tmp_path/'img'/'s0.png'
    out = load_own_data(datalist=tmp_path/'d.json', size=16)
    assert len(out['train']) == 4 and out['val'].names == ['s4'] and out['test'].names == ['s5'] and out['train'].augment and not out['val'].augment
    assert out['preprocess']['in_channels'] == 1 and out['preprocess']['size'] == {'rule': 'edge', 'edge': 16, 'pad_multiple': 16}
    rows = ['image,label,split'] + [f'img/s{k}.png,lab/s{k}.png,{"validation" if k == 4 else "training"}' for k in range(5)]
    (tmp_path/'d.csv').write_text('\n'.join(rows))
    out = load_own_data(datalist=tmp_path/'d.csv')
    assert len(out['train']) == 4 and out['val'].names == ['s4'] and out['test'] is None
    (tmp_path/'bad.json').write_text(json.dumps({'training': [{'image': 'img/nope.png', 'label': 'lab/s0.png'}]}))
    with pytest.raises(DataError, match='nope.png'): read_datalist(tmp_path/'bad.json')
    (tmp_path/'u16.csv').write_text('\n'.join(rows), encoding='utf-16')
    with pytest.raises(DataError, match='UTF-16'): read_datalist(tmp_path/'u16.csv')

def test_utf16_split_list_is_one_clear_error(tmp_path):
    (tmp_path/'s.txt').write_text('a\nb\n', encoding='utf-16')
    with pytest.raises(DataError, match='UTF-16'): read_split(tmp_path/'s.txt')
    (tmp_path/'c.txt').write_bytes(b'a\r\nb')
    assert read_split(tmp_path/'c.txt') == ['a', 'b']

def test_val_frac_split_reproducible_and_disjoint(tmp_path):
    _set(tmp_path, 10)
    a = load_own_data(tmp_path/'img', tmp_path/'lab', val_frac=0.3, seed=1)
    b = load_own_data(tmp_path/'img', tmp_path/'lab', val_frac=0.3, seed=1)
    assert a['val'].names == b['val'].names and len(a['val']) == 3 and not set(a['val'].names) & set(a['train'].names)
    x, y = a['train'].batch(torch.arange(2))[:2]
    assert x.shape == (2, 1, 16, 16) and y.shape == (2, 1, 16, 16)
    with pytest.raises(DataError, match='either'): load_own_data(tmp_path/'img', tmp_path/'lab', datalist=tmp_path/'x.json')

def test_transform_rejected_on_tensor_path():
    from medseg_tutor.data.synthetic import SyntheticLesionDataset
    with pytest.raises(DataError, match='transform'): TensorSegData.from_dataset(SyntheticLesionDataset(2, 16, transform=lambda d: d))
    with pytest.raises(DataError, match='transform'): TensorSegData(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), torch.zeros(1, 1, 4, 4), transform=abs)

def test_cli_options(tmp_path):
    _set(tmp_path)
    p = argparse.ArgumentParser(); p.add_argument('--size', type=int, default=32)       # an option the command already has
    add_data_args(p)
    ns = p.parse_args(['--images', str(tmp_path/'img'), '--masks', str(tmp_path/'lab'), '--val-frac', '0.5', '--invert-mask'])
    out = data_from_args(ns)
    assert len(out['train']) == 3 and out['preprocess']['mask']['invert'] and out['train'].images.shape[-1] == 32
    assert data_from_args(p.parse_args([])) is None
    with pytest.raises(DataError, match='--masks'): data_from_args(p.parse_args(['--images', str(tmp_path/'img')]))

def test_write_datalist_round_trip_relative_paths(tmp_path):
    from medseg_tutor.data.folder import write_datalist
    _set(tmp_path)
    p = write_datalist(tmp_path/'lists'/'d.json', {'training': [{'image': tmp_path/'img'/'s0.png', 'label': tmp_path/'lab'/'s0.png'}],
                                                   'val': [{'image': tmp_path/'img'/'s1.png', 'label': tmp_path/'lab'/'s1.png'}],
                                                   'test': [tmp_path/'img'/'s2.png']}, name='x')
    raw = json.loads(p.read_text())
    assert raw['name'] == 'x' and raw['training'][0]['image'] == '../img/s0.png' and raw['test'] == [{'image': '../img/s2.png'}]
    r = read_datalist(p)
    assert r['validation'][0]['label'].resolve() == (tmp_path/'lab'/'s1.png').resolve() and r['test'][0]['label'] is None
    with pytest.raises(DataError, match='section'): write_datalist(tmp_path/'e.json', {'train2': []})

def test_one_image_geometry_for_training_read_for_model_and_infer(tmp_path):
    "fit_to_rule is the geometry of training (FolderSegDataset.load), read_for_model and train.infer.to_model_input."
    from medseg_tutor.data.folder import fit_to_rule
    from medseg_tutor.train import infer
    rng = np.random.default_rng(0)
    _save(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8), tmp_path/'i'/'a.png'); _save(np.full((30, 50), 255, np.uint8), tmp_path/'m'/'a.png')
    for size in (40, [24, 40], None):
        ds = FolderSegDataset(tmp_path/'i', tmp_path/'m', size=size, pad_multiple=16)
        img = ds.read(0)[0]
        a, ch = fit_to_rule(img, ds.rule)
        assert np.array_equal(a, ds.load(0)[0]) and a.shape[0] % 16 == 0 and a.shape[1] % 16 == 0
        spec = infer.preprocess_spec({'preprocess': ds.preprocess})
        b, undo = infer.to_model_input(img, spec)
        assert np.array_equal(a, b) and undo['inner'] == ch and undo['hw'] == (30, 50)
        x, info = read_for_model(tmp_path/'i'/'a.png', ds.preprocess)
        assert torch.allclose(x, infer.prepare(torch.from_numpy(b).permute(2, 0, 1)[None].contiguous(), spec), atol=1e-6)
        assert info == {'orig_hw': (30, 50), 'content_hw': ch}
