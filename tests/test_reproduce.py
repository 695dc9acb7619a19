"Reproduce a table: dry run, table format, resume of a half-done table (one run finished, one killed mid-way)."
import json, os, signal, subprocess, sys, time, statistics, argparse
from pathlib import Path
import pytest
from medseg_tutor.core import MedsegError
from medseg_tutor.train import reproduce as R

def _tiny_busi(root: Path) -> Path:
    "A tiny folder in BUSI's layout (DATA's make_example_dataset)."
    from medseg_tutor.data.synthetic import make_example_dataset
    return make_example_dataset('busi', root/'busi', n=20, size=64)

TINY = R.Table('tiny', 'busi-mobileutr at 64²', (R.Run('split1-seed41', 'mobileutr-busi', 1, 41),
                                                R.Run('split2-seed41', 'mobileutr-busi', 2, 41)), R.TABLES['busi-mobileutr'].published[:1])
SMALL = ['--size', '64']     # the recipe at 64² so that a CPU epoch takes a second

def test_tables_defined():
    assert set(R.TABLES) == {'busi-mobileutr', 'busi-mobileutr-l', 'sirst-srsnet', 'busi-srsnet'}
    for t in R.TABLES.values():
        assert t.published and all(p.source for p in t.published)
        order = [r.name for r in R._order(t)]
        assert all(order.index(r.after) < order.index(r.name) for r in t.runs if r.after)
    s = R.get_table('sirst-srsnet')
    assert s.metrics == ('iou_pooled', 'niou', 'f1') and all(r.split == 'test' for r in s.runs)
    with pytest.raises(MedsegError, match='known tables'): R.get_table('busi')

def test_dry_run_lists_commands(tmp_path):
    out = tmp_path/'t'
    (out/'split1-seed41').mkdir(parents=True); (out/'split1-seed41'/'done.json').write_text('{}')
    (out/'split2-seed41').mkdir(); (out/'split2-seed41'/'last.pt').write_bytes(b'x')
    res = R.reproduce('busi-mobileutr', out, 'DATA', dry_run=True, train_args=['--amp', 'bf16'], verbose=False)
    p = {r['run']: r for r in res['plan']}
    assert [p[k]['status'] for k in ('split1-seed41', 'split2-seed41', 'split3-seed41')] == ['done', 'partial', 'new']
    assert p['split1-seed41']['commands'] == []
    tr2, ev2 = p['split2-seed41']['commands']
    assert tr2.startswith('medseg-tutor train --recipe mobileutr-busi') and '--resume' in tr2 and '--fold 2' in tr2
    assert tr2.endswith('--amp bf16') and ev2.startswith('medseg-tutor eval --ckpt') and ev2.endswith('--fold 2')
    assert '--resume' not in p['split3-seed41']['commands'][0]
    assert not (out/'split3-seed41').exists()          # a dry run creates nothing
    # SRSNet: phase 2 starts from its phase-1 run's best.pt, phase 1 is not evaluated
    q = {r['run']: r for r in R.plan('busi-srsnet', tmp_path/'s', 'DATA')}
    assert len(q['R-split1-seed41']['commands']) == 1
    assert f"--init {tmp_path/'s'/'R-split1-seed41'/'best.pt'}" in q['S-dpconv-split1-seed41']['commands'][0]

def _fake_run(d: Path, iou, f1, epochs=3, planned=None, evaluated=True):
    d.mkdir(parents=True)
    rows = [dict(epoch=e + 1, train_loss=1.0 / (e + 1), val_iou=iou / 100 * (e + 1) / epochs, val_f1=f1 / 100 * (e + 1) / epochs) for e in range(epochs)]
    (d/'log.csv').write_text('epoch,train_loss,val_iou,val_f1\n' + ''.join(f"{r['epoch']},{r['train_loss']},{r['val_iou']},{r['val_f1']}\n" for r in rows))
    if evaluated:
        (d/'eval.json').write_text(json.dumps(dict(iou=iou / 100, iou_std=0.25, f1=f1 / 100, f1_std=0.2, n=195)))
        (d/'trained.json').write_text('{}'); (d/'done.json').write_text('{}')

def test_table_format(tmp_path, monkeypatch):
    out = tmp_path/'t'
    for k, (iou, f1) in enumerate([(69.53, 78.31), (72.36, 80.96), (73.81, 82.63)], 1): _fake_run(out/f'split{k}-seed41', iou, f1)
    monkeypatch.setattr(R, '_planned_epochs', lambda d, summary=None: dict(planned=3, fitted=None))
    md = R.table_markdown('busi-mobileutr', out, machine='test machine', command='medseg-tutor reproduce busi-mobileutr')
    lines = md.splitlines()
    assert 'Machine: test machine' in md and '`medseg-tutor reproduce busi-mobileutr`' in md
    row2 = next(l for l in lines if l.startswith('| split2-seed41 '))
    assert '| 72.36 ± 25.00 | 80.96 ± 20.00 | done |' in row2 and '| 3 of 3 | 3 |' in row2
    mean = next(l for l in lines if 'mean ± std over 3 run(s)' in l)
    ious, f1s = [69.53, 72.36, 73.81], [78.31, 80.96, 82.63]
    assert f"{statistics.mean(ious):.2f} ± {statistics.stdev(ious):.2f}" in mean and f"{statistics.mean(f1s):.2f} ± {statistics.stdev(f1s):.2f}" in mean
    assert 'not at full length' not in mean
    pub = next(l for l in lines if l.startswith('| published: Mobile U-ViT'))
    assert '72.88 ± 2.72 | 81.18 ± 3.05' in pub and 'Medical-Image-Segmentation-Benchmarks' in md
    # a run stopped before its evaluation: best row of its log, marked, and the mean says so
    import shutil; shutil.rmtree(out/'split3-seed41'); _fake_run(out/'split3-seed41', 60.0, 70.0, evaluated=False)
    (out/'split3-seed41'/'last.pt').write_bytes(b'x')
    monkeypatch.setattr(R, '_planned_epochs', lambda d, summary=None: dict(planned=300, fitted=None))
    md = R.table_markdown('busi-mobileutr', out, machine='m')
    row3 = next(l for l in md.splitlines() if l.startswith('| split3-seed41 '))
    assert '60.00 (log)' in row3 and 'partial (stopped after epoch 3)' in row3 and '3 of 300' in row3
    assert '(3 not at full length)' in md
    # ... and once its best checkpoint so far has been evaluated (reproduce does that after a deadline stop)
    (out/'split3-seed41'/'eval_partial.json').write_text(json.dumps(dict(iou=0.61, iou_std=0.3, f1=0.71, f1_std=0.28, n=195)))
    row3 = next(l for l in R.table_markdown('busi-mobileutr', out, machine='m').splitlines() if l.startswith('| split3-seed41 '))
    assert '61.00 ± 30.00 (so far)' in row3

def test_cli_list_and_dry_run(tmp_path, capsys):
    p = argparse.ArgumentParser(); R.add_reproduce_args(p)
    assert R.reproduce_main(p.parse_args(['--list'])) == 0
    assert 'S-plain-seed43' in capsys.readouterr().out
    assert R.reproduce_main(p.parse_args(['busi-mobileutr-l', '--dry-run', '--out', str(tmp_path/'l')])) == 0
    assert '--recipe mobileutr-l-busi' in capsys.readouterr().out
    with pytest.raises(MedsegError, match='per-gpu'): R.reproduce_main(p.parse_args(['busi-mobileutr', '--per-gpu', '0']))

def _kill_after_first_epoch(cmd, d: Path, env):
    "Start a training process, SIGKILL it once it has written its first last.pt (a run killed mid-way)."
    d.mkdir(parents=True)
    with open(d/'train.log', 'w') as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        t0 = time.time()
        while time.time() - t0 < 300 and p.poll() is None and not (d/'last.pt').is_file(): time.sleep(0.02)
        os.killpg(p.pid, signal.SIGKILL); p.wait()

def test_resume_half_done_table(tmp_path):
    root, out, E = _tiny_busi(tmp_path), tmp_path/'tiny', 4
    env = dict(R._cli_env(), OMP_NUM_THREADS='1')
    # run 1 finishes through reproduce (a one-run table with the same folder names)
    one = R.Table('tiny', 'run 1 only', TINY.runs[:1])
    r1 = R.reproduce(one, out, root, epochs=E, train_args=SMALL, poll_s=0.1, verbose=False)
    assert r1['done'] == ['split1-seed41'] and R.run_status(out/'split1-seed41') == 'done', R._tail(out/'split1-seed41'/'train.log')
    n_att = len((out/'split1-seed41'/'attempts.jsonl').read_text().splitlines())
    # run 2 is killed after its first epoch
    cmd = R.cli_prefix() + R.train_command(TINY.runs[1], out/'split2-seed41', root, epochs=E, train_args=SMALL, device='cpu')
    _kill_after_first_epoch(cmd, out/'split2-seed41', env)
    done_before = len(R.read_log(out/'split2-seed41'))
    assert 1 <= done_before < E and R.run_status(out/'split2-seed41') == 'partial'
    assert [r['status'] for r in R.plan(TINY, out, root, epochs=E, train_args=SMALL)] == ['done', 'partial']
    # the whole table again: run 1 is skipped, run 2 resumes from its last epoch
    res = R.reproduce(TINY, out, root, per_gpu=2, epochs=E, train_args=SMALL, poll_s=0.1, verbose=False)
    assert res['done'] == ['split1-seed41', 'split2-seed41'] and not res['failed']
    assert len((out/'split1-seed41'/'attempts.jsonl').read_text().splitlines()) == n_att
    att = [json.loads(l) for l in (out/'split2-seed41'/'attempts.jsonl').read_text().splitlines()]
    assert att[0]['step'] == 'train' and '--resume' in att[0]['command'] and att[0]['rc'] == 0
    assert 'resumed from' in (out/'split2-seed41'/'train.log').read_text()
    log = R.read_log(out/'split2-seed41')
    assert [int(r['epoch']) for r in log] == list(range(1, E + 1))
    md = (out/'table.md').read_text()
    assert md.count(f'| {E} of {E} |') == 2 and 'mean ± std over 2 run(s)' in md and (out/'curves.png').is_file()

def test_deadline_stops_and_resumes(tmp_path):
    "A table stopped at its deadline keeps last.pt, scores the best checkpoint so far, and plans a --resume."
    root, out = _tiny_busi(tmp_path), tmp_path/'dl'
    one = R.Table('tiny', 'run 1 only', TINY.runs[:1])
    res = R.reproduce(one, out, root, epochs=500, train_args=SMALL, deadline_s=45, poll_s=0.1, verbose=False)
    d = out/'split1-seed41'
    assert res['stopped'] and res['done'] == [] and res['failed'] == []
    att = [json.loads(l) for l in (d/'attempts.jsonl').read_text().splitlines()]
    assert att[-1]['note'] == 'stopped at the deadline' and att[-1]['rc'] != 0
    st = R.run_status(d)
    assert st in ('partial', 'new')                  # 'new' only if the machine was too busy for one epoch in 45 s
    if st == 'partial':
        assert (d/'eval_partial.json').is_file() and '(so far)' in (out/'table.md').read_text()
        assert '--resume' in R.plan(one, out, root, epochs=500, train_args=SMALL)[0]['commands'][0]

def test_table_rows_per_seed(tmp_path, monkeypatch):
    "Two seeds of a split table: one row per seed with ± over its splits (what the published ± is), then all runs."
    out, vals = tmp_path/'t', {41: [70.06, 71.73, 74.81], 42: [69.89, 72.36, 74.65]}
    for s, ious in vals.items():
        for k, iou in enumerate(ious, 1): _fake_run(out/f'split{k}-seed{s}', iou, iou + 8)
    monkeypatch.setattr(R, '_planned_epochs', lambda d, summary=None: dict(planned=3, fitted=None))
    lines = R.table_markdown(R.with_seeds(R.get_table('busi-mobileutr'), [41, 42]), out, machine='m').splitlines()
    for s, ious in vals.items():
        row = next(l for l in lines if l.startswith(f'| mean ± std over the 3 split(s) of seed {s} '))
        assert f"| {statistics.mean(ious):.2f} ± {statistics.stdev(ious):.2f} |" in row
    both = vals[41] + vals[42]
    assert f"{statistics.mean(both):.2f} ± {statistics.stdev(both):.2f}" in next(l for l in lines if 'mean ± std over 6 run(s)' in l)
    # one seed: no per-seed row
    assert not any('of seed' in l for l in R.table_markdown('busi-mobileutr', out, machine='m').splitlines())

def test_seeds_repeat_every_run(tmp_path, capsys):
    t = R.with_seeds(R.get_table('busi-srsnet'), [41, 7])
    assert len(t.runs) == 2 * len(R.get_table('busi-srsnet').runs)
    s = t.run('S-dpconv-split2-seed7')
    assert (s.seed, s.fold, s.after) == (7, 2, 'R-split2-seed7')
    assert [r.name for r in R._order(t)].index('R-split2-seed7') < [r.name for r in R._order(t)].index('S-dpconv-split2-seed7')
    with pytest.raises(MedsegError, match='at least one seed'): R.with_seeds(t, [])
    p = argparse.ArgumentParser(); R.add_reproduce_args(p)
    assert R.reproduce_main(p.parse_args(['busi-mobileutr', '--seeds', '41,42', '--dry-run', '--out', str(tmp_path/'m')])) == 0
    o = capsys.readouterr().out
    assert 'split3-seed42' in o and '--fold 3 --seed 42' in o and 'split3-seed43' not in o

def test_fitted_schedule_is_not_full_length(tmp_path):
    out = tmp_path/'t'
    for k in (1, 2, 3): _fake_run(out/f'split{k}-seed41', 70.0 + k, 80.0 + k, epochs=3)
    (out/'split2-seed41'/'summary.json').write_text(json.dumps(dict(epoch=3, epochs=3)))   # an engine that did not record requested_epochs
    (out/'split3-seed41'/'summary.json').write_text(json.dumps(dict(epoch=3, epochs=3, requested_epochs=300)))
    (out/'split2-seed41'/'train.log').write_text("time budget 475 s: 204 s used, ~2.31 s/epoch -> running 3 of 300 epochs; "
                                                 "the lr schedule is re-fitted to end at epoch 3\n")
    md = R.table_markdown('busi-mobileutr', out, machine='m', command='c')
    row2 = next(l for l in md.splitlines() if l.startswith('| split2-seed41 '))
    assert '3 of 300 †' in row2 and "† the run's schedule was fitted to a time budget" in md
    assert '3 of 300 †' in next(l for l in md.splitlines() if l.startswith('| split3-seed41 '))   # from summary.json alone
    assert '| run | split | seed | epochs |' in md         # one-recipe, one-arm table: no arm or recipe column
    assert '† the run' not in R.table_markdown('busi-mobileutr', tmp_path/'empty', machine='m')
    assert '(1 not at full length)' in md or '(3 not at full length)' in md

@pytest.fixture
def popens(monkeypatch):
    "Every process `reproduce` starts, as (command, environment), each finishing at once with exit 0."
    seen = []
    class Done:
        def __init__(self, cmd, env=None, **kw): seen.append((cmd, env or {})); self.pid = 0
        def poll(self): return 0
    monkeypatch.setattr(R.subprocess, 'Popen', Done)
    return seen

def test_fit_deadline_gives_each_phase_a_share(tmp_path, popens):
    t = R.with_seeds(R.get_table('sirst-srsnet'), [41])
    with pytest.raises(MedsegError, match='needs --deadline'): R.reproduce(t, tmp_path/'x', fit_deadline=True, verbose=False)
    R.reproduce(t, tmp_path/'s', 'DATA', gpus='cpu', per_gpu=3, deadline_s=1000, fit_deadline=True, verbose=False, poll_s=0)
    budgets = {c[c.index('--out') + 1].split('/')[-1]: float(c[c.index('--time-budget') + 1]) for c, _ in popens if 'train' in c}
    assert set(budgets) == {'R-seed41', 'S-dpconv-seed41', 'S-plain-seed41'}
    assert 440 < budgets['R-seed41'] < 480                      # half of (1000 - 45 s kept for evaluation)
    assert budgets['S-dpconv-seed41'] > 900 and budgets['S-plain-seed41'] > 900   # phase 2 gets what is left

def test_runs_subset_starts_only_those_and_their_phase_one(tmp_path, popens, capsys):
    R.reproduce('sirst-srsnet', tmp_path/'s', 'DATA', gpus='cpu', verbose=False, poll_s=0, runs='S-plain-seed42')
    started = sorted({c[c.index('--out') + 1].split('/')[-1] for c, _ in popens if 'train' in c})
    assert started == ['R-seed42', 'S-plain-seed42'], started
    md = (tmp_path/'s'/'table.md').read_text()
    assert 'S-dpconv-seed43' in md                    # the table written still lists every run of the table
    p = argparse.ArgumentParser(); R.add_reproduce_args(p)
    with pytest.raises(MedsegError, match='no run'):
        R.reproduce_main(p.parse_args(['busi-mobileutr', '--runs', 'split9-seed41', '--out', str(tmp_path/'m')]))

def test_table_names_the_machine_the_runs_trained_on(tmp_path):
    "A table written elsewhere (run folders merged after several device calls) names the machine the engine recorded in\n"
    "each run's summary.json, not its own."
    out = tmp_path/'t'
    for k in (1, 2, 3):
        _fake_run(out/f'split{k}-seed41', 70.0 + k, 80.0 + k)
        (out/f'split{k}-seed41'/'summary.json').write_text(json.dumps(dict(epoch=3, epochs=3, machine='NVIDIA H200, torch 2.11.0+cu130')))
    md = R.write_table('busi-mobileutr', out, 'c')
    assert 'Machine: NVIDIA H200, torch 2.11.0+cu130;' in md
    assert 'Machine: my box;' in R.write_table('busi-mobileutr', out, 'c', machine='my box')     # --machine wins
    _fake_run(out/'x'/'split1-seed41', 70.0, 80.0)                                                   # no machine recorded
    assert 'Machine: ' + R._machine() in R.write_table('busi-mobileutr', out/'x', 'c')

def test_stopped_run_scored_again_after_a_failure(tmp_path, monkeypatch):
    "A score of a stopped run that fails (as under MPS right after the kill) is tried once more, alone; a second failure is said."
    out, flaky = tmp_path/'t', tmp_path/'failed_once-'
    for r in TINY.runs: (out/r.name).mkdir(parents=True); (out/r.name/'best.pt').write_bytes(b'x')
    monkeypatch.setattr(R, 'run_status', lambda d: 'partial')
    monkeypatch.setattr(R, 'eval_command', lambda r, ckpt, root, dev: [str(ckpt.parent.name)])
    monkeypatch.setattr(R, '_EVAL_RETRY_WAIT_S', 0.0)
    # the fake CLI: run split1 fails on its first call (cudaErrorDevicesUnavailable), then scores; run split2 always fails
    code = ("import sys, pathlib; n = sys.argv[2]; f = pathlib.Path(sys.argv[1] + n)\n"
            "if n.startswith('split2') or (n.startswith('split1') and not f.exists()):\n"
            "    f.touch(); sys.exit('CUDA error: cudaErrorDevicesUnavailable')\n"
            "print('{\"iou\": 0.5, \"f1\": 0.6, \"n\": 3}')")
    monkeypatch.setattr(R, 'cli_prefix', lambda: [sys.executable, '-c', code, str(flaky)])
    said = []
    R._eval_stopped(TINY, out, None, [('cpu', 0)], 'cpu', said.append)
    d1, d2 = out/TINY.runs[0].name, out/TINY.runs[1].name
    assert json.loads((d1/'eval_partial.json').read_text())['iou'] == 0.5
    assert 'cudaErrorDevicesUnavailable' in (d1/'eval.err').read_text() and 'second attempt' in (d1/'eval.err').read_text()
    assert not (d2/'eval_partial.json').exists() and (d2/'eval.err').read_text().count('cudaErrorDevicesUnavailable') == 2
    assert any('failed twice' in s and d2.name in s for s in said) and said[-1].startswith('evaluated the best checkpoint of 1 of 2')

def test_table_of_a_stopped_run_copied_back_without_checkpoints(tmp_path):
    "A stopped run's folder brought back without its *.pt (as the device scripts do) is still 'partial', scored so far."
    out = tmp_path/'t'; d = out/TINY.runs[0].name; d.mkdir(parents=True)
    (d/'log.csv').write_text('epoch,train_loss,val_iou,val_f1\n1,0.9,0.40,0.50\n2,0.8,0.55,0.65\n3,0.7,0.50,0.60\n')
    (d/'summary.json').write_text(json.dumps(dict(epoch=3, epochs=300, requested_epochs=300)))
    (d/'eval_partial.json').write_text(json.dumps(dict(iou=0.52, iou_std=0.2, f1=0.63, f1_std=0.2, n=195)))
    assert R.run_status(d) == 'new'                                   # for scheduling: nothing to resume from here
    row = R.summarize(TINY, out)[0]
    assert row['status'] == 'partial' and row['metrics']['source'] == 'partial' and row['metrics']['iou'] == pytest.approx(52)
    md = R.write_table(TINY, out, 'cmd')
    line = next(l for l in md.splitlines() if l.startswith(f'| {d.name} |'))
    assert '| 3 of 300 |' in line and '52.00 ± 20.00 (so far)' in line and 'partial (stopped after epoch 3)' in line

def test_runs_spread_over_gpus_before_doubling_up(tmp_path, popens):
    "Three R runs on two GPUs with three slots each start on GPUs 0, 1, 0 (not all three on GPU 0, the other idle)."
    R.reproduce('sirst-srsnet', tmp_path/'s', 'DATA', gpus='0,1', per_gpu=3, verbose=False, poll_s=0)
    first = {c[c.index('--out') + 1].split('/')[-1]: e.get('CUDA_VISIBLE_DEVICES') for c, e in popens if 'train' in c}
    assert [first[f'R-seed{s}'] for s in (41, 42, 43)] == ['0', '1', '0'], first

def _log(d, *walls):
    "A run folder whose log.csv has one epoch per (epoch_s, eval_s) pair."
    d.mkdir(parents=True, exist_ok=True)
    rows = ['epoch,train_loss,epoch_s,eval_s'] + [f"{i + 1},0.5,{a},{b}" for i, (a, b) in enumerate(walls)]
    (d/'log.csv').write_text('\n'.join(rows) + '\n')

def test_a_run_that_cannot_log_an_epoch_before_the_deadline_is_not_started(tmp_path, popens):
    "Round 7 (2 x H200) started three S runs 31-34 s before the deadline; compiling, they were stopped with no epoch logged."
    t = R.with_seeds(R.get_table('sirst-srsnet'), [41])
    out = tmp_path/'t'
    _log(out/'R-seed41', (248.0, 4.0), (6.0, 0.5))                 # R done; its first epoch (compilation) took 252 s
    (out/'R-seed41'/'done.json').write_text('{}')
    assert R.longest_epoch_s(t, out, 'srsnet-sirst-phase2') == 252.0   # no S epoch yet: the table's longest
    t0 = time.monotonic()
    res = R.reproduce(t, out, 'DATA', gpus='cpu', per_gpu=2, deadline_s=200, verbose=False, poll_s=0)
    assert popens == [] and res['stopped'] and time.monotonic() - t0 < 20   # nothing started, and no wait for the deadline
    assert all(R.run_status(out/r) == 'new' for r in ('S-dpconv-seed41', 'S-plain-seed41'))
    # with time for an epoch they start; an S run's own log, once there, is what counts
    R.reproduce(t, out, 'DATA', gpus='cpu', per_gpu=2, deadline_s=300, verbose=False, poll_s=0)
    assert sum('train' in c for c, _ in popens) == 2
    _log(out/'S-dpconv-seed41', (40.0, 1.0))
    assert R.longest_epoch_s(t, out, 'srsnet-sirst-phase2') == 41.0

def test_runs_without_a_deadline_or_a_logged_epoch_always_start(tmp_path, popens):
    t = R.with_seeds(R.get_table('sirst-srsnet'), [41])
    R.reproduce(t, tmp_path/'a', 'DATA', gpus='cpu', per_gpu=3, deadline_s=5, verbose=False, poll_s=0)   # nothing logged yet
    assert sum('train' in c for c, _ in popens) >= 1
