"CLI train / eval / predict / demo: one-line errors with exit code 2, the fast demo, a tiny real-data run."
import sys, subprocess, contextlib, io, json
from pathlib import Path
import numpy as np
import pytest, torch
from PIL import Image
from medseg_tutor.cli import main

torch.set_num_threads(1)

from conftest import run_cli as run   # the CLI in this process: (rc, stdout, stderr)

@pytest.mark.parametrize('argv, says', [
    (['train', '--recipe', 'mobileutr-busi', '--data-root', '/no/such/folder'], 'does not exist'),
    (['train', '--recipe', 'no-such-recipe'], 'unknown recipe'),
    (['train'], 'no recipe given'),
    (['train', '--recipe', 'mobileutr-busi', '--epochs', '0'], 'positive'),
    (['train', '--recipe', 'mobileutr-busi', '--epochs', 'x'], 'invalid int'),
    (['train', '--recipe', 'srsnet-busi-phase2', '--init', '/no/p1.pt', '--data-root', '/'], 'not a file'),
    (['train', '--recipe', 'mobileutr-busi', '--resume', '--overwrite'], 'one of them'),
    (['train', '--recipe', 'mobileutr-busi', '--variant', 'tiny'], '3D recipes'),
    (['train', '--recipe', 'mobileutr-busi', '--size', '32', '48'], 'trains on square images'),
    (['eval', '--ckpt', '/no/such.pt'], 'not found'),
    (['predict', '--ckpt', '/no/such.pt', '--input', '/no/img.png'], 'not found'),
    (['demo', '--dataset', 'mnist'], 'invalid choice'),
    (['demo', '--data-root', '/no/such/folder'], 'does not exist'),
])
def test_bad_input_is_one_line_exit_2(argv, says):
    rc, out, err = run(argv)
    assert rc == 2, (rc, out, err)
    assert err.count('\n') == 1 and 'Traceback' not in err and says in err, err

def test_bad_data_root_one_line_in_a_real_process(tmp_path):
    (tmp_path/'empty').mkdir()
    r = subprocess.run([sys.executable, '-c', 'import sys; from medseg_tutor.cli import main; sys.exit(main())',
                        'train', '--recipe', 'mobileutr-busi', '--data-root', str(tmp_path/'empty')], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'busi' in r.stderr and 'Traceback' not in r.stderr, r.stderr

def test_demo_fast_gives_dice_and_figure_then_eval_and_predict(tmp_path):
    rc, out, err = run(['demo', '--fast', '--out', str(tmp_path/'demo'), '--device', 'cpu'])
    assert rc == 0, err
    dice = float(out.split('Dice ')[1].split()[0])
    assert 0 <= dice <= 1 and (tmp_path/'demo'/'demo.png').stat().st_size > 10_000
    v = tmp_path/'demo'/'val'
    rc, out, err = run(['eval', '--ckpt', str(tmp_path/'demo'/'best.pt'), '--images', str(v/'images'), '--masks', str(v/'masks'),
                        '--device', 'cpu', '--json'])
    assert rc == 0, err
    assert abs(json.loads(out)['dice'] - dice) < 0.02
    Image.fromarray((np.random.rand(40, 52, 3) * 255).astype(np.uint8)).save(tmp_path/'a.jpg')
    rc, out, err = run(['predict', '--ckpt', str(tmp_path/'demo'/'best.pt'), '--input', str(tmp_path/'a.jpg'),
                        '--out', str(tmp_path/'pred'), '--device', 'cpu'])
    assert rc == 0, err
    m = np.asarray(Image.open(tmp_path/'pred'/'a_mask.png'))
    assert m.shape == (40, 52) and set(np.unique(m)) <= {0, 255} and (tmp_path/'pred'/'a_overlay.png').exists()

def test_train_list_and_train_resume_on_synthetic(tmp_path):
    rc, out, _ = run(['train', '--list'])
    assert rc == 0 and 'mobileutr-busi' in out and 'srsnet-sirst-phase2' in out and 'mambamim-pretrain' in out
    base = ['train', '--recipe', 'demo-mobileutr', '--out', str(tmp_path/'r'), '--device', 'cpu', '--no-progress', '--batch-size', '64']
    rc, out, err = run(base + ['--epochs', '1'])
    assert rc == 0 and 'best val dice' in out, err
    rc, out, err = run(base + ['--epochs', '2', '--resume'])
    assert rc == 0 and 'of 2' in out, err
    assert len((tmp_path/'r'/'log.csv').read_text().splitlines()) == 3

def test_mobileutr_busi_on_real_data_two_steps(tmp_path, data_dir):
    rc, out, err = run(['train', '--recipe', 'mobileutr-busi', '--data-root', str(data_dir), '--size', '64', '--max-steps', '2',
                        '--out', str(tmp_path/'m'), '--device', 'cpu', '--no-progress'])
    assert rc == 0, err
    ck = torch.load(tmp_path/'m'/'best.pt', weights_only=True)
    assert ck['meta']['recipe'] == 'mobileutr-busi' and len(ck['meta']['data']['train_names']) == 452 and 0 <= ck['metrics']['iou'] <= 1
