"bench/bench_srsnet.py: every eager row of the table runs on a CPU at a tiny size and the table says what it measured."
import importlib.util, math
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parents[1]

def load_bench():
    spec = importlib.util.spec_from_file_location('bench_srsnet', ROOT/'bench'/'bench_srsnet.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def test_bench_tiny_cpu_table(tmp_path, capsys):
    torch.set_num_threads(1)
    b = load_bench()
    b.main(['--device', 'cpu', '--size', '32', '--batch', '2', '--steps', '1', '--warmup', '1', '--tiny',
            '--configs', 'fp32', 'bf16cl', 'bf16cl+chk', '--models', 'R', 'RS', 'S', '--infer', 'RS', '--out', str(tmp_path)])
    rows = [l for l in (tmp_path/'table.md').read_text().splitlines() if l.startswith('| train') or l.startswith('| infer')]
    # 3 models x 3 configs of training rows, + inference of RS for the two configs without the engine checks
    assert len(rows) == 9 + 2, rows
    assert not any('FAILED' in r or 'skipped' in r for r in rows), rows
    cells = [r.split('|')[1:-1] for r in rows]
    for c in cells:
        img_s, ms = float(c[3]), float(c[4])
        assert img_s > 0 and math.isclose(img_s, 2 / ms * 1e3, rel_tol=0.02), c      # img/s = batch / (ms/step)
    assert all(c[5].strip() == '1.00x' for c in cells if c[2].strip() == 'fp32 eager')
    assert 'graph breaks 0' in capsys.readouterr().out

def test_bench_rejects_unknown_config_and_bad_size():
    b = load_bench()
    with pytest.raises(SystemExit): b.main(['--configs', 'fp16'])
    with pytest.raises(SystemExit): b.main(['--device', 'cpu', '--size', '30'])

def test_bench_steps_match_the_recipe_losses():
    "The timed step's loss is the recipe's: MSE(R(x), x) in phase 1, 0.5 BCE + Dice in phase 2."
    from medseg_tutor.train.srsnet import reconstruction_loss, segmentation_loss
    b = load_bench(); dev = torch.device('cpu')
    for model in ('R', 'RS'):
        m = b.build(model, tiny=True).train()
        x = torch.rand(2, 3, 32, 32); y = (torch.rand(2, 1, 32, 32) > 0.8).float()
        opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.0)
        loss = b.make_step(m, model, opt, x, y, None, dev, False, False)()
        with torch.no_grad(): want = reconstruction_loss(m(x), x) if model == 'R' else segmentation_loss(m(x), y)
        assert torch.allclose(loss, want, rtol=1e-5), (model, loss, want)

def test_bench_reports_nonfinite_training_instead_of_a_speed(tmp_path, monkeypatch):
    "A row whose training turns NaN (no per-step check) is reported NON-FINITE after its timed steps, not timed as a speed."
    torch.set_num_threads(1)
    b = load_bench()
    monkeypatch.setattr(b, 'reconstruction_loss', lambda out, x: ((out - x) ** 2).mean() * float('nan'))
    b.main(['--device', 'cpu', '--size', '32', '--batch', '2', '--steps', '1', '--warmup', '1', '--tiny',
            '--cells', 'fp32:R', 'fp32:RS', '--out', str(tmp_path)])
    rows = [l for l in (tmp_path/'table.md').read_text().splitlines() if l.startswith('| train')]
    assert len(rows) == 2, rows
    r_row, rs_row = sorted(rows, key=lambda l: 'frozen' in l)
    assert 'NON-FINITE after 2 steps' in r_row and 'img/s' not in r_row, r_row
    assert 'NON-FINITE' not in rs_row and float(rs_row.split('|')[4]) > 0, rs_row    # phase 2 (its own loss) is unaffected
