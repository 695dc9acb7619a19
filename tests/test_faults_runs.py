"""Run-level faults (issue 15), each reproduced and checked: no silent overwrite, resume that trains, NaN stops, writable
output, kill-consistent files, truthful --fold, one-line exit-2 errors, warnings for slow CPU options."""
import os, sys, json, signal, subprocess, contextlib, io, warnings, math
from pathlib import Path
import pytest, torch
from medseg_tutor.cli import main
from medseg_tutor.core import MedsegError
from medseg_tutor.train.engine import Trainer, TrainConfig, TinyUNet, NonFiniteError, read_csv
from medseg_tutor.train.checkpoint import load_checkpoint, check_run
from medseg_tutor.data.tensors import TensorSegData
from medseg_tutor.data.synthetic import make_example_dataset

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]

from conftest import run_cli as run   # the CLI in this process: (rc, stdout, stderr)

@pytest.fixture(scope='module')
def busi(tmp_path_factory):
    return make_example_dataset('busi', tmp_path_factory.mktemp('d')/'busi', n=8, size=64).parent

def train(busi, out, *extra):
    return run(['train', '--recipe', 'mobileutr-busi', '--data-root', str(busi), '--size', '32', '--batch-size', '4',
                '--device', 'cpu', '--no-progress', '--out', str(out), *extra])

def toy(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorSegData(torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=g),
                         (torch.rand(n, 1, 16, 16, generator=g) > 0.7).to(torch.uint8), in_channels=1, augment=True)

CFG = TrainConfig(epochs=2, batch_size=4, lr=0.01, progress=False, verbose=False)

# -- a new run never replaces an earlier one ------------------------------------------------------------------
def test_existing_run_is_refused_and_kept_then_overwrite_replaces_it(busi, tmp_path):
    rc, _, err = train(busi, tmp_path/'r', '--epochs', '1')
    assert rc == 0, err
    before = {f: (tmp_path/'r'/f).read_bytes() for f in ('best.pt', 'log.csv', 'last.pt')}
    rc, _, err = train(busi, tmp_path/'r', '--epochs', '1')
    assert rc == 2 and err.count('\n') == 1 and str(tmp_path/'r') in err and '--resume' in err and '--overwrite' in err, err
    assert all((tmp_path/'r'/f).read_bytes() == b for f, b in before.items())
    rc, _, err = train(busi, tmp_path/'r', '--epochs', '1', '--overwrite')
    assert rc == 0, err

# -- resume with more epochs (or a new lr) trains on ----------------------------------------------------------
def test_resume_with_more_epochs_extends_the_schedule_and_changes_weights(busi, tmp_path):
    rc, _, err = train(busi, tmp_path/'r', '--epochs', '1')
    assert rc == 0, err
    w1 = load_checkpoint(tmp_path/'r'/'last.pt')['model']
    rc, out, err = train(busi, tmp_path/'r', '--epochs', '3', '--lr', '0.02', '--resume')
    assert rc == 0, err
    assert 'schedule extended from 1 to 3 epochs' in out and 'learning rate changed from 0.01 to 0.02' in out, out
    last = load_checkpoint(tmp_path/'r'/'last.pt')
    w3, log = last['model'], read_csv(tmp_path/'r'/'log.csv')
    assert last['epoch'] == 3 and len(log) == 3 and log[1]['lr'] > 0
    changed = [k for k in w1 if w1[k].is_floating_point() and not torch.equal(w1[k], w3[k])]
    assert len(changed) > 0.5 * sum(v.is_floating_point() for v in w1.values())

def test_resume_to_fewer_epochs_than_done_is_a_clear_error(busi, tmp_path):
    assert train(busi, tmp_path/'r', '--epochs', '2')[0] == 0
    rc, _, err = train(busi, tmp_path/'r', '--epochs', '1', '--resume')
    assert rc == 2 and 'already trained 2 epochs' in err, err

# -- NaN stops the run, never becomes best.pt ------------------------------------------------------------------
def test_nan_loss_stops_with_nonzero_exit_and_no_nan_best(tmp_path):
    rc, _, err = run(['train', '--recipe', 'demo-mobileutr', '--lr', '1e12', '--epochs', '3', '--device', 'cpu',
                      '--no-progress', '--out', str(tmp_path/'nan')])
    assert rc == 2 and err.count('\n') == 1 and ('not finite' in err or 'not a number' in err) and 'lower --lr' in err and 'Traceback' not in err, err
    b = tmp_path/'nan'/'best.pt'
    assert not b.exists() or all(torch.isfinite(v).all() for v in load_checkpoint(b)['model'].values() if v.is_floating_point())

def test_nan_patience_and_nan_input_are_named():
    with pytest.raises(NonFiniteError, match='2 steps in a row|3 steps in a row'):
        Trainer(TinyUNet(1, 1, width=4), toy(), None, CFG.replace(lr=1e15, nonfinite_patience=1, epochs=5), device='cpu').fit()
    bad = toy(); bad.images = bad.images.float() / 255; bad.images[2, 0, 3, 3] = float('nan')
    with pytest.raises(MedsegError, match='NaN/Inf'):
        Trainer(TinyUNet(1, 1, width=4), bad, None, CFG, device='cpu').fit()

def test_a_nan_score_never_becomes_best(tmp_path):
    calls = []
    def evaluate(t, d):
        calls.append(1)
        return {'iou': float('nan') if len(calls) == 2 else 0.1 * len(calls)}
    Trainer(TinyUNet(1, 1, width=4), toy(), toy(8, 1), CFG.replace(epochs=3), evaluate=evaluate, out=tmp_path, device='cpu').fit()
    b = load_checkpoint(tmp_path/'best.pt')
    assert b['epoch'] == 3 and math.isfinite(b['metrics']['iou'])

# -- the output folder is checked before any training -----------------------------------------------------------
def test_unwritable_out_fails_before_training(busi, tmp_path):
    (tmp_path/'file').write_text('x')
    rc, _, err = train(busi, tmp_path/'file'/'run', '--epochs', '1')
    assert rc == 2 and err.count('\n') == 1 and 'not writable' in err and 'Traceback' not in err, err

# -- a kill at any write leaves best.pt, the log and the summary consistent ------------------------------------------
KILL = '''
import os, signal, sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
import medseg_tutor.train.checkpoint as C
from test_faults_runs import toy, CFG
from medseg_tutor.train.engine import Trainer, TinyUNet
n, orig = [0], C._save
def save(obj, path):
    n[0] += 1
    if n[0] == {k}: os.kill(os.getpid(), signal.SIGKILL)       # dies just before this write
    return orig(obj, path)
C._save = save
torch.manual_seed(0)
Trainer(TinyUNet(1, 1, width=4), toy(), toy(8, 1), CFG.replace(epochs=3), out={out!r}, device='cpu').fit()
'''

@pytest.mark.parametrize('k', [2, 3, 4])      # kill before the 2nd, 3rd or 4th checkpoint write (best/last of epochs 1-2)
def test_kill_between_writes_leaves_consistent_files(tmp_path, k):
    out = tmp_path/'k'
    (tmp_path/'k.py').write_text(KILL.format(tests=str(REPO/'tests'), k=k, out=str(out)))
    r = subprocess.run([sys.executable, str(tmp_path/'k.py')], capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'}, cwd=REPO)
    assert r.returncode == -9, r.stderr[-2000:]
    b = load_checkpoint(out/'best.pt')
    row = read_csv(out/'log.csv')[b['epoch'] - 1]
    assert row['val_iou'] == b['metrics']['iou']              # best.pt holds what the log says about its epoch
    check_run(out, repair=True); assert check_run(out) == []
    assert not [p for p in out.iterdir() if '.tmp' in p.name]
    if (out/'last.pt').exists():
        torch.manual_seed(0)
        Trainer(TinyUNet(1, 1, width=4), toy(), toy(8, 1), CFG.replace(epochs=3), out=out, device='cpu').fit(resume=True)
        assert check_run(out) == [] and len(read_csv(out/'log.csv')) == 3

# -- --fold is checked against the recipe and recorded truthfully ----------------------------------------------------
def test_fold_is_validated_and_recorded(busi, tmp_path):
    rc, _, err = train(busi, tmp_path/'f0', '--fold', '0', '--epochs', '1')
    assert rc == 2 and 'fold 0' in err and '1, 2, 3' in err, err
    rc, _, err = train(busi, tmp_path/'f2', '--fold', '2', '--epochs', '1')
    assert rc == 0, err
    assert load_checkpoint(tmp_path/'f2'/'best.pt')['meta']['data']['fold'] == 2
    rc, _, err = run(['train', '--recipe', 'srsnet-sirst-phase1', '--fold', '1'])
    assert rc == 2 and 'one fixed split' in err

# -- one line, exit 2, no traceback ------------------------------------------------------------------------------
@pytest.mark.parametrize('extra, says', [
    (['--device', 'gpu'], 'CUDA'), (['--device', 'mps'], 'MPS'), (['--device', 'tpu'], 'unknown device'),
    (['--lr', '-1'], 'positive'), (['--lr', '0'], 'positive'), (['--lr', 'nan'], 'positive'),
    (['--compile', 'fastest'], 'compile mode'), (['--fold', '7'], 'fold 7'), (['--batch-size', '0'], 'positive'),
    (['--time-budget', '-5'], 'positive'),
])
def test_bad_flags_are_one_line_exit_2(busi, tmp_path, extra, says):
    if extra[:2] == ['--device', 'gpu'] and torch.cuda.is_available(): pytest.skip('a GPU is present')
    if extra[:2] == ['--device', 'mps'] and torch.backends.mps.is_available(): pytest.skip('MPS is present')
    rc, out, err = train(busi, tmp_path/'x', *extra)
    assert rc == 2 and err.count('\n') == 1 and says in err and 'Traceback' not in err, err
    assert not (tmp_path/'x'/'log.csv').exists()

def test_bad_flags_in_a_real_process_have_no_traceback(busi, tmp_path):
    r = subprocess.run([sys.executable, '-m', 'medseg_tutor', 'train', '--recipe', 'mobileutr-busi', '--lr', '0',
                        '--data-root', str(busi)], capture_output=True, text=True, timeout=300, cwd=REPO,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr

# -- slow options on a CPU say so -----------------------------------------------------------------------------------
def test_fp16_and_compile_on_cpu_warn():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        Trainer(TinyUNet(1, 1, width=4), toy(), None, CFG.replace(amp='fp16'), device='cpu')
        Trainer(TinyUNet(1, 1, width=4), toy(), None, CFG.replace(compile=True), device='cpu')
    msgs = [str(x.message) for x in w]
    assert any('fp16' in m and 'slower' in m for m in msgs) and any('torch.compile' in m and 'CPU' in m for m in msgs), msgs

def test_cli_warning_is_one_line(busi, tmp_path):
    rc, out, err = train(busi, tmp_path/'w', '--amp', 'fp16', '--max-steps', '1')
    assert rc == 0 and 'medseg-tutor: warning:' in err and 'fp16' in err and 'Traceback' not in err, err
    assert all(l.startswith('medseg-tutor: warning:') for l in err.strip().splitlines() if 'warning' in l)
