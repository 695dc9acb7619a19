"""Issue 15 fault probes on the checkpoint / inference side: hostile checkpoints run nothing and are refused in one line
(exit 2, no traceback) through eval, predict, train --resume and train --init; damaged files; predict outputs that never
collide; 16-bit predict == training preprocessing; empty predictions; splits; metrics at each image's own size."""
import json, os, subprocess, sys, textwrap, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from medseg_tutor.core import MedsegError, ShapeError
from medseg_tutor.registry import create_model
from medseg_tutor.train.checkpoint import CheckpointError, save_checkpoint, digest
from medseg_tutor.train import infer
from medseg_tutor.train.infer import evaluate_checkpoint, predict_files, InferenceWarning

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(REPO)}

# The CLI contract: `medseg_tutor.cli.main`; while the CLI does not yet route eval/predict to train.infer, the same
# contract (a MedsegError prints one line, exit 2) is applied around infer's own CLI pieces.
DRIVER = textwrap.dedent("""
    import sys, argparse
    from medseg_tutor.train import infer
    from medseg_tutor.core import MedsegError
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd in ('eval', 'predict'):
        try: from medseg_tutor import cli; fn, _, args = cli.COMMANDS.get(cmd, (None, None, None))
        except ImportError: fn = args = None
        wired = fn in (infer.eval_main, infer.predict_main) or args in (infer.add_eval_args, infer.add_predict_args)
    if cmd not in ('eval', 'predict') or wired:
        from medseg_tutor import cli
        sys.exit(cli.main([cmd] + argv))
    p = argparse.ArgumentParser(prog='medseg-tutor ' + cmd)
    (infer.add_eval_args if cmd == 'eval' else infer.add_predict_args)(p)
    ns = p.parse_args(argv)
    try: sys.exit((infer.eval_main if cmd == 'eval' else infer.predict_main)(ns))
    except MedsegError as e:
        print(f"medseg-tutor {cmd}: error: {e}", file=sys.stderr); sys.exit(2)
""")

def cli(*args, cwd=None):
    "Run the CLI in a fresh process; returns (rc, stdout, stderr)."
    r = subprocess.run([sys.executable, '-c', DRIVER, *map(str, args)], capture_output=True, text=True, env=ENV,
                       cwd=cwd, timeout=300)
    return r.returncode, r.stdout, r.stderr

def cli_inproc(*args):
    "The same contract in this process (faster; used for the non-hostile cases)."
    import argparse, contextlib, io
    cmd, argv = args[0], [str(a) for a in args[1:]]
    try: from medseg_tutor import cli as C; fn, _, a = C.COMMANDS.get(cmd, (None, None, None))
    except ImportError: fn = a = None                    # the CLI module is being rebuilt by its owner
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if fn in (infer.eval_main, infer.predict_main) or a in (infer.add_eval_args, infer.add_predict_args):
            rc = C.main([cmd] + argv)
        else:
            p = argparse.ArgumentParser(prog='medseg-tutor ' + cmd)
            (infer.add_eval_args if cmd == 'eval' else infer.add_predict_args)(p)
            try: rc = (infer.eval_main if cmd == 'eval' else infer.predict_main)(p.parse_args(argv))
            except MedsegError as e: print(f"medseg-tutor {cmd}: error: {e}", file=sys.stderr); rc = 2
    return rc, out.getvalue(), err.getvalue()

def refused(rc, out, err, marker=None, match=''):
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert rc == 2, (rc, out, err)
    assert 'Traceback' not in err and len(lines) == 1, err
    assert match in lines[0], (match, lines[0])
    if marker is not None: assert not Path(marker).exists(), 'the hostile checkpoint ran code'

# -- data and checkpoints ---------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    from medseg_tutor.data.synthetic import make_example_dataset
    return make_example_dataset('kvasir', tmp_path_factory.mktemp('data')/'kvasir', n=6, size=32, seed=0)

def make_ckpt(path, in_channels=3, bias=None, size=32, task='2d-seg', train_names=(), preprocess=None, **data):
    torch.manual_seed(0)
    m = create_model('tiny_unet', in_channels=in_channels, width=4)
    if bias is not None:
        with torch.no_grad(): m.head.weight.zero_(); m.head.bias.fill_(bias)
    meta = dict(model=m.medseg_spec, recipe=None, task=task, in_channels=in_channels, num_classes=1,
                preprocess=preprocess or dict(size=[size, size], normalize='imagenet', in_channels=in_channels),
                data=dict(train_names=list(train_names), **data))
    save_checkpoint(dict(model=m.state_dict(), meta=meta, epoch=1, metrics={}, config={}), path)
    return path

@pytest.fixture(scope='module')
def ckpt(tmp_path_factory, folder):
    names = sorted(p.stem for p in (folder/'images').iterdir())
    return make_ckpt(tmp_path_factory.mktemp('ck')/'best.pt', train_names=names[:2], val_names=names[2:4])

class Payload:
    "Unpickling this calls `os.system('touch MARKER')`: what a hostile checkpoint does."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f"touch '{self.marker}'",))

def pickle_bomb(path, marker):
    torch.save(dict(model={'w': torch.zeros(2)}, meta=Payload(marker), epoch=1), path)
    return path

def import_path_ckpt(path, marker, new_format=False, with_hash=True):
    "Plain dicts and strings only, but meta names an import path and its kwargs (what `load_model` used to import and call)."
    spec = {'name': 'subprocess:run', 'kw': {'args': ['touch', str(marker)]}} if new_format else 'subprocess:run'
    ck = dict(model={}, meta=dict(model=spec, model_kw={'args': ['touch', str(marker)]}, task='2d-seg'), epoch=1)
    if with_hash: save_checkpoint(ck, path)
    else: torch.save(ck, path)
    return path

# -- the four hostile checkpoints ----------------------------------------------------------------------------------
def test_pickle_payload_through_eval_and_predict(tmp_path, folder):
    marker = tmp_path/'MARKER'
    bomb = pickle_bomb(tmp_path/'best.pt', marker)
    refused(*cli('eval', '--ckpt', bomb, '--images', folder/'images', '--masks', folder/'masks'), marker, 'refused without running anything')
    refused(*cli('predict', '--ckpt', bomb, '--input', folder/'images', '--out', tmp_path/'pred'), marker, 'refused without running anything')

@pytest.mark.parametrize('new_format,with_hash', [(False, True), (True, True), (False, False)])
def test_import_path_checkpoint_through_eval_and_predict(tmp_path, folder, new_format, with_hash):
    marker = tmp_path/'MARKER'
    p = import_path_ckpt(tmp_path/'best.pt', marker, new_format, with_hash)
    run = cli if (new_format, with_hash) == (False, True) else cli_inproc      # one variant in a fresh process (slow to start)
    for args in (('eval', '--ckpt', p, '--images', folder/'images', '--masks', folder/'masks'),
                 ('predict', '--ckpt', p, '--input', folder/'images', '--out', tmp_path/'pred')):
        rc, out, err = run(*args)
        refused(rc, out, err, marker)
        assert ('no integrity hash' if not with_hash else 'unknown model' if new_format else 'never an import path') in err

def _train_path_unsafe(*files) -> bool:
    return any('weights_only=False' in (REPO/'medseg_tutor'/'train'/f).read_text() for f in files)

@pytest.mark.xfail(_train_path_unsafe('engine.py'), strict=False,
                   reason="the engine still reads last.pt with weights_only=False (its owner switches to train.checkpoint.load_checkpoint)")
def test_pickle_payload_through_train_resume(tmp_path, folder):
    marker, out = tmp_path/'MARKER', tmp_path/'run'
    out.mkdir(); pickle_bomb(out/'last.pt', marker)
    refused(*cli('train', '--recipe', 'mobileutr-folder', '--images', folder/'images', '--masks', folder/'masks', '--size', '32',
                 '--epochs', '1', '--max-steps', '1', '--out', out, '--resume', '--device', 'cpu', '--no-progress'),
            marker, 'refused without running anything')

@pytest.mark.xfail(_train_path_unsafe('recipes.py', 'engine.py'), strict=False,
                   reason="the phase-2 recipe still reads --init with weights_only=False (its owner switches to the registry's srsnet(init=...))")
def test_pickle_payload_through_train_init(tmp_path, folder):
    marker = tmp_path/'MARKER'
    bomb = pickle_bomb(tmp_path/'phase1.pt', marker)
    refused(*cli('train', '--recipe', 'srsnet-folder-phase2', '--images', folder/'images', '--masks', folder/'masks', '--size', '32',
                 '--init', bomb, '--epochs', '1', '--max-steps', '1', '--out', tmp_path/'run', '--device', 'cpu', '--no-progress'),
            marker, 'refused without running anything')

def test_recipe_checkpoint_evaluates_like_training(tmp_path, folder):
    "A checkpoint the train command wrote: eval on its own validation names gives about the Dice training logged (own size vs canvas)."
    from medseg_tutor import cli as C
    out = tmp_path/'run'
    rc = C.main(['train', '--recipe', 'mobileutr-folder', '--images', str(folder/'images'), '--masks', str(folder/'masks'),
                 '--size', '32', '--epochs', '1', '--max-steps', '2', '--out', str(out), '--device', 'cpu', '--no-progress'])
    assert rc == 0 and (out/'best.pt').is_file()
    from medseg_tutor.train.checkpoint import load_checkpoint, check_run
    assert check_run(out) == []
    logged = load_checkpoint(out/'best.pt')['metrics']['dice']
    rc, o, err = cli_inproc('eval', '--ckpt', out/'best.pt', '--images', folder/'images', '--masks', folder/'masks', '--split', 'val',
                            '--json', '--no-hd95')
    r = json.loads(o)
    assert rc == 0 and r['train_overlap'] == 0 and r['model'] == 'mobileutr'
    assert abs(r['dice'] - logged) < 0.05, (r['dice'], logged)
    rc, o, err = cli_inproc('predict', '--ckpt', out/'best.pt', '--input', folder/'images', '--out', tmp_path/'pred')
    assert rc == 0 and len(list((tmp_path/'pred').glob('*_mask.png'))) == 6

def test_hostile_files_through_the_python_api(tmp_path, folder):
    marker = tmp_path/'MARKER'
    for p in (pickle_bomb(tmp_path/'a.pt', marker), import_path_ckpt(tmp_path/'b.pt', marker),
              import_path_ckpt(tmp_path/'c.pt', marker, new_format=True)):
        with pytest.raises(CheckpointError):
            evaluate_checkpoint(p, images=folder/'images', masks=folder/'masks', device='cpu', hd95=False)
        with pytest.raises(CheckpointError): predict_files(p, folder/'images', tmp_path/'o', device='cpu')
    with pytest.raises(CheckpointError): create_model('srsnet', init=str(tmp_path/'a.pt'))          # --init's builder
    assert not marker.exists()

# -- damaged files --------------------------------------------------------------------------------------------------
def test_damaged_checkpoints_one_line(tmp_path, ckpt, folder):
    raw = Path(ckpt).read_bytes()
    w = torch.load(ckpt, weights_only=True)['model']['e3.0.weight'].numpy().tobytes()
    i = raw.find(w[:64]); assert i > 0
    zeroed = bytearray(raw); zeroed[i:i + 512] = bytes(512)
    for name, data, match in (('trunc.pt', raw[:len(raw) // 3], 'truncated or corrupt'), ('empty.pt', b'', '0 bytes'),
                              ('zeroed.pt', bytes(zeroed), 'integrity check')):
        (tmp_path/name).write_bytes(data)
        refused(*cli_inproc('eval', '--ckpt', tmp_path/name, '--images', folder/'images', '--masks', folder/'masks', '--no-hd95'),
                match=match)
        refused(*cli_inproc('predict', '--ckpt', tmp_path/name, '--input', folder/'images', '--out', tmp_path/'p'), match=match)
    refused(*cli_inproc('eval', '--ckpt', tmp_path/'missing.pt', '--images', folder/'images', '--masks', folder/'masks'), match='not found')

# -- eval: sources, splits, JSON, CSV, overlap ------------------------------------------------------------------------
def test_eval_json_csv_and_overlap_warning(tmp_path, ckpt, folder):
    rc, out, err = cli_inproc('eval', '--ckpt', ckpt, '--images', folder/'images', '--masks', folder/'masks', '--json',
                              '--csv', tmp_path/'per.csv', '--device', 'cpu')
    assert rc == 0, err
    r = json.loads(out)
    assert r['n'] == 6 and r['split'] == 'all' and r['train_overlap'] == 2 and 'dice' in r and 'hd95' in r
    assert len((tmp_path/'per.csv').read_text().strip().splitlines()) == 7
    warn = [l for l in err.splitlines() if l.strip()]
    assert len(warn) == 1 and warn[0].startswith('warning: 2 of the 6 evaluated images are in the checkpoint')

def test_eval_split_checks(tmp_path, ckpt, folder):
    refused(*cli_inproc('eval', '--ckpt', ckpt, '--images', folder/'images', '--masks', folder/'masks', '--split', 'test'),
            match="split 'test' is not defined for a folder")
    rc, out, err = cli_inproc('eval', '--ckpt', ckpt, '--images', folder/'images', '--masks', folder/'masks', '--split', 'val',
                              '--json', '--no-hd95')
    assert rc == 0 and json.loads(out)['n'] == 2 and json.loads(out)['train_overlap'] == 0 and err == ''
    # a datalist: only its own sections exist
    ims = sorted((folder/'images').iterdir())
    dl = dict(training=[dict(image=str(p), label=str(folder/'masks'/p.name)) for p in ims[:3]],
              validation=[dict(image=str(p), label=str(folder/'masks'/p.name)) for p in ims[3:]])
    (tmp_path/'dl.json').write_text(json.dumps(dl))
    refused(*cli_inproc('eval', '--ckpt', ckpt, '--datalist', tmp_path/'dl.json', '--split', 'test'),
            match="split 'test' is not in datalist")
    rc, out, err = cli_inproc('eval', '--ckpt', ckpt, '--datalist', tmp_path/'dl.json', '--json', '--no-hd95')
    assert rc == 0 and json.loads(out)['split'] == 'val' and json.loads(out)['n'] == 3
    (tmp_path/'dl.csv').write_text('image,label,split\n' + ''.join(f"{p},{folder/'masks'/p.name},test\n" for p in ims[:2]))
    rc, out, err = cli_inproc('eval', '--ckpt', ckpt, '--datalist', tmp_path/'dl.csv', '--split', 'test', '--json', '--no-hd95')
    assert rc == 0 and json.loads(out)['n'] == 2
    refused(*cli_inproc('eval', '--ckpt', ckpt, '--images', folder/'images'), match='needs masks')
    refused(*cli_inproc('eval', '--ckpt', ckpt, '--images', tmp_path/'nope', '--masks', folder/'masks'), match='does not exist')
    refused(*cli_inproc('eval', '--ckpt', ckpt, '--images', folder/'images', '--masks', folder/'masks', '--threshold', '1.5'),
            match='--threshold')

def test_metrics_at_each_images_own_size(tmp_path, folder):
    "A model that predicts all foreground: Dice per image = 2|G| / (|G| + H*W), with |G| counted on the mask file."
    p = make_ckpt(tmp_path/'all.pt', bias=20.0, size=16)
    r = evaluate_checkpoint(p, images=folder/'images', masks=folder/'masks', device='cpu', hd95=False)
    try: from medseg_tutor.data.folder import read_mask
    except ImportError: from medseg_tutor.data.datasets import read_mask
    for row in r['per_image']:
        g = np.asarray(read_mask(folder/'masks'/f"{row['name']}.jpg")) > 0
        assert g.shape == (32, 40)                                      # non-square, not the model's 16 x 16
        assert row['dice'] == pytest.approx(2 * g.sum() / (g.sum() + g.size), abs=1e-6)

def test_recon_and_3d_checkpoints(tmp_path, folder, monkeypatch):
    p = make_ckpt(tmp_path/'r.pt', task='recon')
    refused(*cli_inproc('eval', '--ckpt', p, '--images', folder/'images', '--masks', folder/'masks'), match="'recon' checkpoint")
    p3 = make_ckpt(tmp_path/'v.pt', task='3d-seg')
    import medseg_tutor.mim.finetune as FT
    seen = {}
    def fake_eval(model, data=None, device='auto', **kw): seen.update(kw, model=model); return dict(dice=0.5, n=1)
    def fake_pred(model, inputs=None, out=None, device='auto', **kw): seen.update(kw, inputs=inputs, out=out); return [dict(image='v.nii.gz')]
    monkeypatch.setattr(FT, 'evaluate_volumes', fake_eval, raising=False)
    monkeypatch.setattr(FT, 'predict_volumes', fake_pred, raising=False)
    assert evaluate_checkpoint(p3, datalist='x.json', device='cpu') == dict(dice=0.5, n=1)
    assert seen['meta']['task'] == '3d-seg' and seen['datalist'] == 'x.json'
    assert predict_files(p3, ['a.nii.gz'], tmp_path/'o', device='cpu') == [dict(image='v.nii.gz')] and seen['inputs'] == ['a.nii.gz']

# -- predict ------------------------------------------------------------------------------------------------------------
def test_predict_outputs_never_collide(tmp_path, ckpt, folder):
    src = tmp_path/'in'; (src/'other').mkdir(parents=True)
    im = Image.open(next((folder/'images').iterdir()))
    im.save(src/'a.png'); im.save(src/'a.jpg'); im.save(src/'other'/'a.png'); im.save(src/'b.bmp')
    rc, out, err = cli_inproc('predict', '--ckpt', ckpt, '--input', src, src/'other', '--out', tmp_path/'pred', '--device', 'cpu')
    assert rc == 0, err
    masks = sorted(p.name for p in (tmp_path/'pred').glob('*_mask.png'))
    assert len(masks) == 4 and len(list((tmp_path/'pred').glob('*_overlay.png'))) == 4, masks
    rows = (tmp_path/'pred'/'predictions.csv').read_text().strip().splitlines()
    assert len(rows) == 5 and len({r.split(',')[2] for r in rows[1:]}) == 4
    assert 'wrote 4 masks' in out
    assert infer.output_stems([Path('x/a.png'), Path('y/a.png'), Path('x/a.png')]) == ['x_a_png_1', 'y_a_png', 'x_a_png_2']

def test_empty_predictions_warned_and_counted(tmp_path, folder):
    p = make_ckpt(tmp_path/'none.pt', bias=-20.0)
    rc, out, err = cli_inproc('predict', '--ckpt', p, '--input', folder/'images', '--out', tmp_path/'pred', '--no-overlay')
    assert rc == 0
    assert '0 with foreground, 6 empty' in out
    assert sum(l.startswith('warning: empty prediction') for l in err.splitlines()) == 6 and 'Traceback' not in err
    assert not list((tmp_path/'pred').glob('*_overlay.png'))
    with pytest.warns(InferenceWarning, match='empty prediction'):
        predict_files(p, folder/'images', tmp_path/'pred2', device='cpu')
    # eval of a model that predicts nothing: no precision of 1.0 (0/0 is undefined), strict JSON, counts reported
    rc, out, err = cli_inproc('eval', '--ckpt', p, '--images', folder/'images', '--masks', folder/'masks', '--no-hd95', '--json')
    r = json.loads(out)
    assert rc == 0 and r['dice'] == 0 and r['precision'] != 1.0 and 'NaN' not in out
    if 'n_empty_pred' in r: assert r['n_empty_pred'] == 6 and r['precision'] is None

@pytest.mark.parametrize('size', [32, [32, 32], None])
def test_predict_16bit_equals_training_preprocessing(tmp_path, size):
    "A 16-bit PNG is rescaled exactly as the training reader does (not clipped to white), and predicted the same."
    from medseg_tutor.data.folder import FolderSegDataset, read_for_model
    yy, xx = np.mgrid[:40, :52]
    a16 = (1000 + 3000 * np.exp(-((yy - 20) ** 2 + (xx - 26) ** 2) / 80.0) + 5 * xx).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path/'img16.png')
    Image.fromarray(np.zeros((40, 52), np.uint8)).save(tmp_path/'m.png')
    ds = FolderSegDataset(items=[dict(image=tmp_path/'img16.png', label=tmp_path/'m.png')], size=size, channels=3)
    ckpt = make_ckpt(tmp_path/'best.pt', preprocess=ds.preprocess)
    spec = infer.preprocess_spec(torch.load(ckpt, weights_only=True)['meta'])
    img = infer.read_image(tmp_path/'img16.png', 3)
    assert img.dtype == np.uint8 and img.min() == 0 and img.max() == 255            # rescaled, not clipped
    a, undo = infer.to_model_input(img, spec)
    x_pred = infer.prepare(torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].contiguous(), spec)
    x_train = ds.to_tensors(augment=False).batch(torch.arange(1))[0]                # what training feeds the model
    assert torch.equal(x_pred, x_train)
    assert torch.allclose(x_pred, read_for_model(tmp_path/'img16.png', ds.preprocess)[0], atol=1e-6)
    # end to end: the 16-bit file and its training-decoded 8-bit twin give the same mask, at the image's own size
    Image.fromarray(img).save(tmp_path/'img8.png')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', InferenceWarning)
        rows = predict_files(ckpt, [tmp_path/'img16.png', tmp_path/'img8.png'], tmp_path/'pred', device='cpu')
    m16, m8 = (np.asarray(Image.open(r['mask'])) for r in rows)
    assert m16.shape == (40, 52) and np.array_equal(m16, m8)

def test_grey_model_on_rgb_images(tmp_path, folder):
    p = make_ckpt(tmp_path/'grey.pt', in_channels=1)
    r = evaluate_checkpoint(p, images=folder/'images', masks=folder/'masks', device='cpu', hd95=False)
    assert r['n'] == 6
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', InferenceWarning)           # an untrained model: empty masks are expected
        rows = predict_files(p, folder/'images', tmp_path/'pred', device='cpu')
    assert len(rows) == 6 and all(Path(r['overlay']).is_file() for r in rows)

# -- model input (issue 15: uint8 / fp64 input gave a deep traceback) -------------------------------------------------------
def test_uint8_and_float64_inputs_to_a_model():
    m = create_model('mobileutr')
    with pytest.raises(ShapeError, match=r'x.float\(\) / 255') as e: m(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert '\n' not in str(e.value)
    with pytest.raises(ShapeError, match=r'convert with x.float\(\)'): m(torch.zeros(1, 3, 32, 32, dtype=torch.float64))

def test_eval_other_fold_warns_about_training_images(tmp_path):
    "`eval --fold 2` on a fold-1 model: the images it trained on are counted and named in a warning."
    from medseg_tutor.data.synthetic import make_example_dataset
    root = tmp_path/'data'; make_example_dataset('busi', root/'busi', n=12, size=32)
    sp = root/'busi'/'splits'
    train1 = [l.strip() for l in (sp/'busi_train1.txt').read_text().splitlines() if l.strip()]
    val2 = [l.strip() for l in (sp/'busi_val2.txt').read_text().splitlines() if l.strip()]
    expected = len(set(train1) & set(val2))
    p = make_ckpt(tmp_path/'b.pt', dataset='busi', fold=1, train_names=train1)
    rc, out, err = cli_inproc('eval', '--ckpt', p, '--data-root', root, '--fold', '2', '--split', 'val', '--json', '--no-hd95')
    assert rc == 0 and json.loads(out)['train_overlap'] == expected and json.loads(out)['n'] == len(val2)
    assert (f"warning: {expected} of the {len(val2)} evaluated images" in err) == (expected > 0)
    rc, out, err = cli_inproc('eval', '--ckpt', p, '--data-root', root, '--split', 'val', '--json', '--no-hd95')   # its own fold
    assert rc == 0 and json.loads(out)['train_overlap'] == 0 and err == ''

def test_multiclass_label_masks(tmp_path):
    "A 3-class model on label masks (values 0/128/255 mapped to classes 0/1/2): per-class Dice against hand counts; class-index masks."
    d = tmp_path/'mc'; (d/'images').mkdir(parents=True); (d/'masks').mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (24, 30, 3), dtype=np.uint8)).save(d/'images'/f'c{i}.png')
        m = np.zeros((24, 30), np.uint8); m[2:10, 3:12] = 128; m[14:20, 15:27 - i] = 255
        Image.fromarray(m).save(d/'masks'/f'c{i}.png')
    torch.manual_seed(0)
    model = create_model('tiny_unet', in_channels=3, num_classes=3, width=4)
    with torch.no_grad(): model.head.weight.zero_(); model.head.bias.copy_(torch.tensor([0., 20., 0.]))   # class 1 everywhere
    meta = dict(model=model.medseg_spec, task='2d-seg', in_channels=3, num_classes=3,
                preprocess=dict(in_channels=3, size={'rule': 'fixed', 'hw': [16, 16], 'pad_multiple': 1}, normalize='imagenet',
                                mask=dict(threshold=None, invert=False, label_map={'0': 0, '128': 1, '255': 2})),
                data=dict(train_names=[]))
    p = save_checkpoint(dict(model=model.state_dict(), meta=meta, epoch=1, metrics={}, config={}), tmp_path/'mc.pt')
    r = evaluate_checkpoint(p, images=d/'images', masks=d/'masks', device='cpu', hd95=False)
    g1, hw = 8 * 9, 24 * 30
    assert r['dice_class1'] == pytest.approx(2 * g1 / (g1 + hw), abs=1e-6) and r['dice_class2'] == 0
    rows = predict_files(p, d/'images', tmp_path/'pred', device='cpu')
    lab = np.asarray(Image.open(rows[0]['mask']))
    assert lab.shape == (24, 30) and set(np.unique(lab)) == {1}

def test_cache_eval_at_the_training_size(tmp_path, monkeypatch):
    "A model trained at --size 32 on a 64² cache: eval on that cache resizes it as training did and gives the logged val IoU."
    from medseg_tutor import cli as C
    from medseg_tutor.data.synthetic import SyntheticLesionDataset
    from medseg_tutor.data.tensors import TensorSegData
    from medseg_tutor.train.checkpoint import load_checkpoint
    cache = tmp_path/'busi64.npz'
    TensorSegData.from_dataset(SyntheticLesionDataset(16, size=64, seed=0)).save(
        cache, splits={'train_idx_1': list(range(10)), 'val_idx_1': list(range(10, 16))})
    out = tmp_path/'run'
    rc = C.main(['train', '--recipe', 'mobileutr-busi', '--data-root', str(cache), '--fold', '1', '--size', '32', '--epochs', '1',
                 '--max-steps', '3', '--out', str(out), '--device', 'cpu', '--no-progress'])
    assert rc == 0
    logged = load_checkpoint(out/'best.pt')['metrics']['iou']
    import medseg_tutor.train.infer as I
    seen, orig = [], I.model_from_checkpoint
    def spy(*a, **k):
        model, meta = orig(*a, **k)
        model.register_forward_hook(lambda m, inp, o: seen.append(tuple(inp[0].shape[-2:])))
        return model, meta
    monkeypatch.setattr(I, 'model_from_checkpoint', spy)
    r = evaluate_checkpoint(out/'best.pt', data_root=cache, split='val', fold=1, device='cpu', hd95=False)
    assert seen and set(seen) == {(32, 32)}, seen                     # the model sees the training geometry
    assert r['n'] == 6 and abs(r['iou'] - logged) < 1e-4, (r['iou'], logged)

def test_pickle_payload_through_mambamim_init(tmp_path):
    "`mambamim-finetune --init` reads the pre-trained encoder through the checked loader: a pickle payload runs nothing."
    from medseg_tutor.core import MedsegError
    from medseg_tutor.mim.finetune import load_encoder
    marker = tmp_path/'MARKER'
    bomb = pickle_bomb(tmp_path/'encoder.pt', marker)
    with pytest.raises(MedsegError) as e: load_encoder(torch.nn.Linear(2, 2), bomb, verbose=False)
    assert not marker.exists() and '\n' not in str(e.value)
