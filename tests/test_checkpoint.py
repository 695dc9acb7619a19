"Checkpoints: plain data only, SHA-256 checked, atomic writes, every kind of damage refused in one line, the model rebuilt only through the registry, best.pt / summary.json consistent after a kill."
import errno, json, os, signal, subprocess, sys, textwrap, time
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import pytest
import torch
from medseg_tutor.core import MedsegError
from medseg_tutor.registry import create_model
from medseg_tutor.train import checkpoint as C
from medseg_tutor.train.checkpoint import (CheckpointError, save_checkpoint, load_checkpoint, model_from_checkpoint,
                                           digest, write_epoch_files, check_run)

torch.set_num_threads(1)

def one_line(e): assert '\n' not in str(e.value), str(e.value); return str(e.value)

def train_ckpt(width=4, epoch=3, **meta_kw):
    torch.manual_seed(epoch)
    m = create_model('tiny_unet', in_channels=1, width=width)
    meta = dict(model=m.medseg_spec, recipe=None, task='2d-seg', in_channels=1, num_classes=1,
                preprocess=dict(size=[16, 16], normalize='unit'), data=dict(train_names=['a', 'b']), **meta_kw)
    return m, dict(model=m.state_dict(), meta=meta, epoch=epoch, metrics=dict(dice=0.5, iou=float('nan')),
                   config=dict(lr=1e-3, betas=(0.9, 0.999), amp=None))

def test_round_trip_and_digest(tmp_path):
    m, ck = train_ckpt()
    ck['extra'] = {0: torch.arange(3), 'bf16': torch.ones(2, dtype=torch.bfloat16), 'b': torch.tensor([True, False]),
                   'empty': torch.zeros(0), 'scalar': torch.tensor(2.5), 'view': torch.arange(10)[::2],
                   'dtype': torch.float16, 'size': torch.Size([2, 3])}
    p = save_checkpoint(ck, tmp_path/'a.pt')
    back = load_checkpoint(p)
    assert back['sha256'] == digest(ck) == digest(back)
    assert back['config']['betas'] == (0.9, 0.999) and back['extra']['dtype'] == torch.float16
    assert not [q for q in tmp_path.iterdir() if q.name != 'a.pt']                # no temp file left
    m2, meta = model_from_checkpoint(p)
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(m2(x), m.eval()(x)) and meta['data']['train_names'] == ['a', 'b'] and not m2.training

def test_digest_sees_every_change():
    _, ck = train_ckpt()
    d0 = digest(ck)
    for change in (lambda c: c['model']['e1.0.weight'].view(-1)[7].add_(1e-7),
                   lambda c: c['meta'].update(task='3d-seg'), lambda c: c.update(epoch=4),
                   lambda c: c['config'].update(betas=[0.9, 0.999])):               # tuple -> list is a change too
        _, c2 = train_ckpt(); c2['model'] = {k: v.clone() for k, v in c2['model'].items()}
        change(c2)
        assert digest(c2) != d0

def test_file_with_sha_key_round_trips_again(tmp_path):
    _, ck = train_ckpt()
    save_checkpoint(ck, tmp_path/'a.pt')
    save_checkpoint(load_checkpoint(tmp_path/'a.pt'), tmp_path/'b.pt')            # a loaded dict (with 'sha256') re-saved
    assert load_checkpoint(tmp_path/'b.pt')['sha256'] == load_checkpoint(tmp_path/'a.pt')['sha256']

@dataclass
class Cfg:
    lr:float = 0.1

@pytest.mark.parametrize('bad,match', [(np.zeros(3), 'numpy'), (np.float32(1), 'numpy'), (Cfg(), 'asdict'),
                                       ({1, 2}, 'sorted list'), (torch.nn.ReLU(), 'cannot hold'), (print, 'cannot hold')])
def test_non_plain_data_refused_before_writing(tmp_path, bad, match):
    with pytest.raises(CheckpointError, match=match) as e: save_checkpoint(dict(model={}, x=[1, {'y': bad}]), tmp_path/'c.pt')
    assert "['x'][1]['y']" in one_line(e)
    assert list(tmp_path.iterdir()) == []

def test_disk_full_is_one_line_and_cleans_up(tmp_path, monkeypatch):
    _, ck = train_ckpt()
    save_checkpoint(ck, tmp_path/'last.pt'); old = (tmp_path/'last.pt').read_bytes()
    def full(obj, f): f.write(b'x' * 100); raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(C.torch, 'save', full)
    with pytest.raises(CheckpointError, match='disk full') as e: save_checkpoint(dict(ck, epoch=9), tmp_path/'last.pt')
    one_line(e)
    assert sorted(q.name for q in tmp_path.iterdir()) == ['last.pt'] and (tmp_path/'last.pt').read_bytes() == old

def test_torch_runtime_error_for_no_space(tmp_path, monkeypatch):
    def full(obj, f): raise RuntimeError('[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0: No space left on device')
    monkeypatch.setattr(C.torch, 'save', full)
    with pytest.raises(CheckpointError, match='disk full'): save_checkpoint(dict(model={}), tmp_path/'x.pt')
    assert list(tmp_path.iterdir()) == []

def test_permission_denied_is_one_line(tmp_path, monkeypatch):
    def denied(*a, **k): raise PermissionError(errno.EACCES, 'Permission denied')
    monkeypatch.setattr(C.tempfile, 'mkstemp', denied)
    with pytest.raises(CheckpointError, match='cannot write') as e: save_checkpoint(dict(model={}), tmp_path/'x.pt')
    one_line(e)

def test_interrupt_during_write_keeps_old_file(tmp_path, monkeypatch):
    _, ck = train_ckpt()
    save_checkpoint(ck, tmp_path/'best.pt')
    def boom(obj, f): f.write(b'partial'); raise KeyboardInterrupt
    monkeypatch.setattr(C.torch, 'save', boom)
    with pytest.raises(KeyboardInterrupt): save_checkpoint(dict(ck, epoch=5), tmp_path/'best.pt')
    monkeypatch.undo()
    assert load_checkpoint(tmp_path/'best.pt')['epoch'] == 3 and len(list(tmp_path.iterdir())) == 1

# -- damaged files ----------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def good(tmp_path_factory):
    _, ck = train_ckpt(width=8)
    p = tmp_path_factory.mktemp('good')/'last.pt'
    save_checkpoint(ck, p)
    return p, ck

def test_missing_dir_empty(tmp_path):
    with pytest.raises(CheckpointError, match='not found'): load_checkpoint(tmp_path/'nope.pt')
    with pytest.raises(CheckpointError, match='is a folder'): load_checkpoint(tmp_path)
    (tmp_path/'z.pt').write_bytes(b'')
    with pytest.raises(CheckpointError, match='0 bytes'): load_checkpoint(tmp_path/'z.pt')

@pytest.mark.parametrize('frac', [0.0001, 0.01, 0.3, 0.5, 0.9, 0.999])
def test_truncated_refused(tmp_path, good, frac):
    raw = good[0].read_bytes()
    (tmp_path/'t.pt').write_bytes(raw[:max(1, int(len(raw) * frac))])
    with pytest.raises(CheckpointError) as e: load_checkpoint(tmp_path/'t.pt')
    one_line(e)

def test_zeroed_blocks_anywhere_are_refused(tmp_path, good):
    "A 512-byte block of zeros at any of 40 offsets: never loads silently, always one CheckpointError line."
    raw = good[0].read_bytes()
    offsets = np.linspace(0, len(raw) - 1, 40).astype(int)
    for off in offsets:
        b = bytearray(raw); b[off:off + 512] = bytes(min(512, len(raw) - off))
        if bytes(b) == raw: continue
        (tmp_path/'z.pt').write_bytes(bytes(b))
        with pytest.raises(CheckpointError) as e: load_checkpoint(tmp_path/'z.pt')
        one_line(e)

def test_zeroed_weights_fail_integrity(tmp_path, good):
    raw = good[0].read_bytes()
    w = good[1]['model']['e3.0.weight'].numpy().tobytes()
    i = raw.find(w[:64]); assert i > 0
    b = bytearray(raw); b[i:i + 256] = bytes(256)
    (tmp_path/'z.pt').write_bytes(bytes(b))
    with pytest.raises(CheckpointError, match='integrity check'): load_checkpoint(tmp_path/'z.pt')

@pytest.mark.parametrize('content', [b'not a checkpoint at all\n', b'PK\x03\x04' + bytes(100), os.urandom(3000)])
def test_garbage_refused(tmp_path, content):
    (tmp_path/'g.pt').write_bytes(content)
    with pytest.raises(CheckpointError) as e: load_checkpoint(tmp_path/'g.pt')
    one_line(e)

def test_no_hash_refused_unless_verify_false(tmp_path, good):
    _, ck = train_ckpt()
    torch.save(ck, tmp_path/'old.pt')
    with pytest.raises(CheckpointError, match='no integrity hash'): load_checkpoint(tmp_path/'old.pt')
    assert load_checkpoint(tmp_path/'old.pt', verify=False)['epoch'] == 3

def test_not_a_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path/'l.pt')
    with pytest.raises(CheckpointError, match='not a medseg_tutor checkpoint'): load_checkpoint(tmp_path/'l.pt')

def test_pickle_payload_runs_nothing(tmp_path):
    marker = tmp_path/'MARKER'
    class Payload:
        def __reduce__(self): return (os.system, (f'touch {marker}',))
    torch.save(dict(model={}, meta=Payload()), tmp_path/'h.pt')
    with pytest.raises(CheckpointError, match='refused without running anything') as e: load_checkpoint(tmp_path/'h.pt')
    one_line(e)
    assert not marker.exists()

# -- rebuilding the model -----------------------------------------------------------------------------------
def test_import_path_model_refused(tmp_path):
    marker = tmp_path/'MARKER'
    for spec in ('subprocess:run', {'name': 'subprocess:run', 'kw': {'args': ['touch', str(marker)]}},
                 {'name': 'tiny_unet', 'kw': {'width': torch.tensor(4)}}, {'kw': {}}, None):
        ck = dict(model={}, meta=dict(model=spec, model_kw={'args': ['touch', str(marker)]}))
        save_checkpoint(ck, tmp_path/'e.pt')
        with pytest.raises(CheckpointError) as e: model_from_checkpoint(tmp_path/'e.pt')
        one_line(e)
    assert not marker.exists()

def test_state_dict_that_does_not_fit(tmp_path):
    _, ck = train_ckpt(width=4)
    ck['meta']['model'] = {'name': 'tiny_unet', 'kw': {'in_channels': 1, 'width': 8}}
    with pytest.raises(CheckpointError, match='do not fit') as e: model_from_checkpoint(ck)
    one_line(e)
    _, ck = train_ckpt(width=4); ck['model'].pop('head.bias')
    with pytest.raises(CheckpointError, match='1 missing'): model_from_checkpoint(ck)

def test_init_keyword_dropped_and_prefixes_stripped(tmp_path):
    m, ck = train_ckpt()
    ck['meta']['model'] = {'name': 'tiny_unet', 'kw': {'in_channels': 1, 'width': 4}}
    ck['model'] = {'_orig_mod.' + k: v for k, v in ck['model'].items()}
    m2, _ = model_from_checkpoint(ck)
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(m2(x), m.eval()(x))
    # srsnet: `init` names a phase-1 file that need not exist when the checkpoint is read back
    s = create_model('srsnet')
    ck = dict(model=s.state_dict(), meta=dict(model={'name': 'srsnet', 'kw': {'init': str(tmp_path/'gone.pt')}}))
    s2, _ = model_from_checkpoint(ck)
    assert sum(p.numel() for p in s2.parameters()) == sum(p.numel() for p in s.parameters())

def test_srsnet_init_reads_safely(tmp_path):
    r = create_model('srsnet_r')
    save_checkpoint(dict(model=r.state_dict(), meta=dict(model=r.medseg_spec)), tmp_path/'p1.pt')
    s = create_model('srsnet', init=str(tmp_path/'p1.pt'))
    assert all(torch.equal(a, b) for a, b in zip(s.R.state_dict().values(), r.state_dict().values()))
    marker = tmp_path/'MARKER'
    class Payload:
        def __reduce__(self): return (os.system, (f'touch {marker}',))
    torch.save(dict(model=Payload()), tmp_path/'evil.pt')
    with pytest.raises(CheckpointError): create_model('srsnet', init=str(tmp_path/'evil.pt'))
    assert not marker.exists()

# -- best.pt and summary.json ---------------------------------------------------------------------------------
def test_epoch_files_consistent_and_kill_detected(tmp_path, monkeypatch):
    _, ck = train_ckpt()
    run = tmp_path/'run'
    write_epoch_files(run, last=dict(ck, epoch=1), best=dict(ck, epoch=1), summary=dict(epochs=1))
    assert check_run(run) == []
    s = json.loads((run/'summary.json').read_text())
    assert s['best']['epoch'] == 1 and s['best']['sha256'] == load_checkpoint(run/'best.pt')['sha256']
    assert s['best']['metrics']['iou'] == 'nan'                         # JSON without NaN literals
    # epoch 2 not better: summary keeps the best entry
    write_epoch_files(run, last=dict(ck, epoch=2), summary=dict(epochs=2))
    assert check_run(run) == [] and json.loads((run/'summary.json').read_text())['best']['epoch'] == 1
    # a kill after best.pt of epoch 3 was written (simulated: last.pt's write is interrupted)
    real = C._save
    def killed(obj, path):
        if Path(path).name == 'last.pt': raise KeyboardInterrupt
        return real(obj, path)
    monkeypatch.setattr(C, '_save', killed)
    with pytest.raises(KeyboardInterrupt): write_epoch_files(run, last=dict(ck, epoch=3), best=dict(ck, epoch=3), summary=dict(epochs=3))
    monkeypatch.undo()
    probs = check_run(run)
    assert len(probs) == 1 and 'names best epoch 1' in probs[0] and 'holds epoch 3' in probs[0]
    assert load_checkpoint(run/'last.pt')['epoch'] == 2                 # every file still whole
    assert check_run(run, repair=True) and check_run(run) == []
    assert json.loads((run/'summary.json').read_text())['best']['epoch'] == 3

def test_check_run_missing_best_and_bad_json(tmp_path):
    run = tmp_path/'r'; run.mkdir()
    (run/'summary.json').write_text(json.dumps({'best': {'epoch': 4}}))
    assert 'does not exist' in check_run(run)[0]
    (run/'summary.json').write_text('{not json')
    assert 'not valid JSON' in check_run(run)[0]

def test_sigkill_at_any_time_leaves_loadable_consistent_files(tmp_path):
    "A child writes epoch files in a loop; SIGKILL at different moments; every file left loads, check_run names at most a stale summary."
    code = textwrap.dedent(f"""
        import torch, sys
        torch.set_num_threads(1)
        from medseg_tutor.train.checkpoint import write_epoch_files
        big = {{'w': torch.randn(400_000)}}
        e = 0
        while True:
            e += 1
            ck = dict(model=big, meta=dict(model={{'name': 'tiny_unet', 'kw': {{}}}}), epoch=e, metrics={{'dice': e / 1000}})
            write_epoch_files(sys.argv[1], last=ck, best=ck if e % 2 else None, summary=dict(epochs=e))
            print(e, flush=True)
    """)
    for k, delay in enumerate((0.03, 0.25)):        # early in an epoch's writes, and some epochs later
        run = tmp_path/f'run{k}'
        p = subprocess.Popen([sys.executable, '-c', code, str(run)], stdout=subprocess.PIPE, env={**os.environ, 'OMP_NUM_THREADS': '1'})
        t0 = time.time()
        while not (run/'summary.json').exists() and time.time() - t0 < 60: time.sleep(0.02)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL); p.wait()
        for f in ('last.pt', 'best.pt'):
            if (run/f).exists(): load_checkpoint(run/f)                  # never half a file
        probs = check_run(run)
        assert all('stopped between writing best.pt and summary.json' in q for q in probs), probs
        assert check_run(run, repair=True) is not None and check_run(run) == []

# -- checkpoints of earlier versions ----------------------------------------------------------------------------
def legacy(tmp_path, model='medseg_tutor.train.engine:TinyUNet'):
    m = create_model('tiny_unet', in_channels=1, width=4)
    old = dict(model=m.state_dict(), epoch=2, metrics={'dice': 0.4}, config=dict(target='mask', betas=(0.9, 0.999)),
               meta=dict(recipe='demo-synthetic', model=model, model_kw=dict(in_channels=1, width=4), size=16, in_channels=1,
                         normalize='imagenet', dataset='synthetic', fold=None))
    torch.save(old, tmp_path/'old.pt')
    return m, tmp_path/'old.pt'

def test_legacy_checkpoint_refused_with_the_fix_then_upgraded(tmp_path):
    from medseg_tutor.train.checkpoint import upgrade_checkpoint
    m, p = legacy(tmp_path)
    with pytest.raises(CheckpointError, match='upgrade_checkpoint') as e: model_from_checkpoint(p)
    one_line(e)
    with pytest.raises(CheckpointError, match='upgrade_checkpoint'): model_from_checkpoint(p, verify=False)
    assert upgrade_checkpoint(p, tmp_path/'new.pt') == tmp_path/'new.pt'
    m2, meta = model_from_checkpoint(tmp_path/'new.pt')
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(m2(x), m.eval()(x)) and meta['model'] == {'name': 'tiny_unet', 'kw': {'in_channels': 1, 'width': 4}}
    assert meta['preprocess']['size'] == {'rule': 'fixed', 'hw': [16, 16], 'pad_multiple': 1} and meta['task'] == '2d-seg'
    assert upgrade_checkpoint(tmp_path/'new.pt') == tmp_path/'new.pt'                       # already current: unchanged

def test_upgrade_refuses_unknown_paths_and_imports_nothing(tmp_path):
    from medseg_tutor.train.checkpoint import upgrade_checkpoint
    marker = tmp_path/'MARKER'
    _, p = legacy(tmp_path, model='subprocess:run')
    with pytest.raises(CheckpointError, match='cannot be converted'): upgrade_checkpoint(p)
    assert not marker.exists()
