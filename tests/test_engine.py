"Training engine: schedules, on-device augmentation, learning, best-on-val, exact resume (tensor and Dataset paths)."
import os, math, time
from pathlib import Path
import numpy as np
import pytest, torch, torch.nn as nn
from medseg_tutor.core import MedsegError, DataError, ShapeError
from medseg_tutor.train.engine import (TrainConfig, Trainer, TinyUNet, LRSchedule, lr_factor, StopTraining, read_csv,
                                       train_throughput, get_loss)
from medseg_tutor.data.tensors import TensorSegData
from medseg_tutor.train.checkpoint import load_checkpoint

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]

def toy(n, size=32, seed=0, augment=True):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
    c = torch.rand(n, 2, generator=g) * size * 0.5 + size * 0.25
    r = torch.rand(n, generator=g) * size * 0.15 + size * 0.1
    m = ((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2 < r[:, None, None] ** 2)
    im = 0.35 + 0.35 * m + 0.2 * torch.rand(n, size, size, generator=g)
    return TensorSegData((im.clamp(0, 1) * 255).to(torch.uint8)[:, None], m[:, None].to(torch.uint8), augment=augment)

class DictDS(torch.utils.data.Dataset):
    "A map-style dataset of the datasets' contract ({'image','mask','name'}), with a random flip from the torch RNG."
    def __init__(self, d): self.d = d
    def __len__(self): return len(self.d)
    def __getitem__(self, i):
        x, y = self.d.batch(torch.tensor([i]))
        if torch.rand(()) < 0.5: x, y = x.flip(-1), y.flip(-1)
        return {'image': x[0], 'mask': y[0], 'name': str(i)}

CFG = TrainConfig(epochs=5, batch_size=8, lr=0.05, progress=False, verbose=False)

def test_schedules_match_torch_and_endpoints():
    p = [nn.Parameter(torch.zeros(1))]
    o1, o2 = torch.optim.SGD(p, lr=0.01), torch.optim.SGD(p, lr=0.01)
    s1, s2 = LRSchedule(o1, 40, 'poly', 0.9), torch.optim.lr_scheduler.PolynomialLR(o2, total_iters=40, power=0.9)
    for _ in range(40):
        assert math.isclose(o1.param_groups[0]['lr'], o2.param_groups[0]['lr'], rel_tol=1e-12, abs_tol=1e-15)
        o2.step(); s1.step(); s2.step()
    assert lr_factor(0, 100, 'cosine', warmup=10) == pytest.approx(0.005)
    assert lr_factor(5, 100, 'cosine', warmup=10) == pytest.approx(0.005 + 0.995 * 0.5)
    assert lr_factor(100, 100, 'cosine', warmup=10) == pytest.approx(0.001)
    with pytest.raises(MedsegError): lr_factor(0, 10, 'step')

def test_tensor_data_batch_normalises_and_keeps_masks_aligned():
    d = toy(8)
    x, y = d.batch(torch.arange(8), torch.Generator().manual_seed(0))
    x0, y0 = d.batch(torch.arange(8), None)
    assert not torch.equal(y, y0)                       # the generator drove an augmentation, none without it
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and set(y.unique().tolist()) <= {0., 1.}
    # the image is brighter inside the disc in every augmented view: mask and image moved together
    assert all(x[i, 0][y[i, 0] > 0].mean() > x[i, 0][y[i, 0] == 0].mean() for i in range(8))

def test_trainer_learns_and_selects_best(tmp_path):
    torch.manual_seed(0)
    res = Trainer(TinyUNet(width=4), toy(64), toy(32, seed=1), CFG, out=tmp_path, device='cpu').fit()
    assert res['best'] > 0.6
    log = read_csv(tmp_path/'log.csv')
    assert len(log) == 5 and res['best'] == max(r['val_iou'] for r in log)
    best = torch.load(tmp_path/'best.pt', weights_only=True)
    assert best['epoch'] == res['best_epoch'] and (tmp_path/'curves.png').stat().st_size > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]
    import json                                                     # where it trained, for tables written elsewhere
    assert json.loads((tmp_path/'summary.json').read_text())['machine'].startswith('CPU (')

def _weights(p): return torch.load(p, weights_only=True)['model']

@pytest.mark.parametrize('kind', ['tensor', 'dataset'])
def test_killed_run_resumes_to_identical_weights(tmp_path, kind):
    tr, va = toy(40), toy(16, seed=1)
    if kind == 'dataset': tr, va = DictDS(tr), DictDS(va)
    cfg = CFG.replace(schedule='cosine', warmup_epochs=1, optimizer='adamw', lr=3e-3, clip_grad=1.0)
    torch.manual_seed(0)
    Trainer(TinyUNet(width=4), tr, va, cfg, out=tmp_path/'a', device='cpu').fit()
    def stop(t):
        if t.epoch == 2: raise StopTraining
    torch.manual_seed(0)
    with pytest.raises(StopTraining):
        Trainer(TinyUNet(width=4), tr, va, cfg, out=tmp_path/'b', device='cpu', callbacks=[stop]).fit()
    torch.manual_seed(7); torch.rand(100)      # disturb every RNG between the runs
    np.random.seed(3)
    Trainer(TinyUNet(width=4), tr, va, cfg, out=tmp_path/'b', device='cpu').fit(resume=True)
    wa, wb = _weights(tmp_path/'a'/'last.pt'), _weights(tmp_path/'b'/'last.pt')
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert read_csv(tmp_path/'a'/'log.csv') != [] and [r['train_loss'] for r in read_csv(tmp_path/'a'/'log.csv')] == \
           [r['train_loss'] for r in read_csv(tmp_path/'b'/'log.csv')]

def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(MedsegError, match='no checkpoint'):
        Trainer(TinyUNet(width=4), toy(8), None, CFG, out=tmp_path, device='cpu').fit(resume=True)

def test_bad_options_are_clear_errors():
    with pytest.raises(MedsegError, match='unknown training option'): CFG.replace(lrr=1)
    with pytest.raises(MedsegError, match='optimizer'): Trainer(TinyUNet(width=4), toy(8), None, CFG.replace(optimizer='lbfgs'), device='cpu')
    for bad in (dict(lr=0), dict(lr=-1), dict(compile='fastest'), dict(amp='fp8'), dict(max_steps=0)):
        with pytest.raises(MedsegError): Trainer(TinyUNet(width=4), toy(8), None, CFG.replace(**bad), device='cpu')
    with pytest.raises(MedsegError): get_loss('focal')

def test_bf16_channels_last_step_runs_on_cpu(tmp_path):
    cfg = CFG.replace(epochs=1, amp='bf16', channels_last=True)
    res = Trainer(TinyUNet(width=4), toy(16), toy(8, seed=1), cfg, device='cpu').fit()
    assert res['epochs'] == 1 and math.isfinite(res['history'][0]['train_loss'])
    t = train_throughput(TinyUNet(width=4), batch_size=2, size=32, steps=2, warmup=1, device='cpu')
    assert t['img_s'] > 0

def test_time_budget_shortens_run_and_completes_schedule(tmp_path):
    cfg = CFG.replace(epochs=50, time_budget_s=1e-6)
    tr = Trainer(TinyUNet(width=4), toy(16), toy(8, seed=1), cfg, out=tmp_path, device='cpu')
    res = tr.fit()
    assert res['epochs'] == 1 and tr.cfg.epochs == 1
    assert tr.opt.param_groups[0]['lr'] == 0.0          # poly re-planned to end at the last epoch run
    tr2 = Trainer(TinyUNet(width=4), toy(16), toy(8, seed=1), cfg, out=tmp_path, device='cpu')
    assert tr2.fit(resume=True)['epochs'] == 1          # a resumed shortened run stays shortened

def budget_run(tmp_path, slow, secs, epochs, budget):
    "A Trainer on toy data whose epochs `slow(epoch)` sleep `secs` first, with a time budget: slow compiles, stand-ins."
    class Slow(Trainer):
        def train_epoch(self, epoch):
            if slow(epoch): time.sleep(secs)
            return super().train_epoch(epoch)
    return Slow(TinyUNet(width=4), toy(16), toy(8, seed=1), CFG.replace(epochs=epochs, time_budget_s=budget), out=tmp_path, device='cpu')

def test_time_budget_is_replanned_every_epoch(tmp_path):
    "Epochs that slow down after the first are seen at once: the run ends within the budget, not after a fixed epoch."
    res = budget_run(tmp_path, lambda e: e >= 1, 0.4, 40, 2.5).fit()
    assert res['train_s'] < 2.5 + 0.8 and 2 <= res['epochs'] < 40, (res['train_s'], res['epochs'])

def test_time_budget_ignores_one_slow_early_epoch(tmp_path):
    "A slow 2nd epoch (compilation, CUDA-graph recording) must not shorten the run for good: the plan uses a median."
    assert budget_run(tmp_path, lambda e: e == 1, 1.5, 12, 8.0).fit()['epochs'] == 12

DDP_SCRIPT = '''
import os, sys, torch
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from test_engine import toy, CFG
from medseg_tutor.train.engine import Trainer, TinyUNet
torch.manual_seed(int(os.environ['RANK']))          # different inits: DDP must broadcast rank 0's
t = Trainer(TinyUNet(width=4), toy(40), toy(16, seed=1), CFG.replace(epochs=2), out={out!r}, device='cpu')
res = t.fit()
torch.save(t.model.state_dict(), {out!r} + f"/w{{os.environ['RANK']}}.pt")
'''

def test_ddp_two_cpu_ranks_stay_in_sync(tmp_path):
    import subprocess, sys
    out = str(tmp_path/'ddp')
    (tmp_path/'s.py').write_text(DDP_SCRIPT.format(repo=str(REPO), tests=str(REPO/'tests'), out=out))
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', str(tmp_path/'s.py')],
                       capture_output=True, text=True, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    w0, w1 = torch.load(f'{out}/w0.pt'), torch.load(f'{out}/w1.pt')
    assert all(torch.equal(w0[k], w1[k]) for k in w0 if 'running' not in k and 'num_batches' not in k)
    log = read_csv(f'{out}/log.csv')
    assert len(log) == 2 and 'val_iou' in log[0]          # rank 0 validated and logged

KILL_SCRIPT = '''
import os, sys, signal, torch
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from test_engine import toy, CFG
from medseg_tutor.train.engine import Trainer, TinyUNet
def kill(t):
    if t.epoch == 2: os.kill(os.getpid(), signal.SIGKILL)      # a hard kill: no exception, no clean-up
torch.manual_seed(0)
Trainer(TinyUNet(width=4), toy(40), toy(16, seed=1), CFG, out={out!r}, device='cpu', callbacks=[kill]).fit()
'''

def test_sigkilled_process_resumes_to_identical_weights(tmp_path):
    import subprocess, sys
    out = str(tmp_path/'k')
    (tmp_path/'k.py').write_text(KILL_SCRIPT.format(repo=str(REPO), tests=str(REPO/'tests'), out=out))
    r = subprocess.run([sys.executable, str(tmp_path/'k.py')], capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])
    assert torch.load(f'{out}/last.pt', weights_only=True)['epoch'] == 2
    Trainer(TinyUNet(width=4), toy(40), toy(16, seed=1), CFG, out=out, device='cpu').fit(resume=True)
    torch.manual_seed(0)
    Trainer(TinyUNet(width=4), toy(40), toy(16, seed=1), CFG, out=tmp_path/'ref', device='cpu').fit()
    wa, wb = _weights(tmp_path/'ref'/'last.pt'), _weights(f'{out}/last.pt')
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

# -- hooks: step, evaluate, callbacks with state, max_steps, ROI batches ---------------------------------------
from medseg_tutor.train.engine import Callback, seg_step, NonFiniteError

class CountEMA(Callback):
    "A callback with state: counts steps and keeps an EMA of one weight (exact resume must restore both)."
    def __init__(self): self.n, self.ema = 0, None
    def after_step(self, t):
        w = next(t.model.parameters()).detach()
        self.ema = w.clone() if self.ema is None else 0.9 * self.ema + 0.1 * w
        self.n += 1
    def state_dict(self): return {'n': self.n, 'ema': self.ema}
    def load_state_dict(self, sd): self.n, self.ema = sd['n'], sd['ema']

def test_custom_step_logs_and_callback_state_resume_exactly(tmp_path):
    def step(t, batch):
        loss, _ = seg_step(t, batch)
        return loss, {'double': 2 * loss.detach()}
    def stop(t):
        if t.epoch == 2: raise StopTraining
    cfg = CFG.replace(epochs=4)
    torch.manual_seed(0); a = CountEMA()
    Trainer(TinyUNet(width=4), toy(24), toy(8, seed=1), cfg, step=step, callbacks=[a], out=tmp_path/'a', device='cpu').fit()
    torch.manual_seed(0)
    with pytest.raises(StopTraining):
        Trainer(TinyUNet(width=4), toy(24), toy(8, seed=1), cfg, step=step, callbacks=[CountEMA(), stop], out=tmp_path/'b', device='cpu').fit()
    b = CountEMA()
    Trainer(TinyUNet(width=4), toy(24), toy(8, seed=1), cfg, step=step, callbacks=[b], out=tmp_path/'b', device='cpu').fit(resume=True)
    assert a.n == b.n == 12 and torch.equal(a.ema, b.ema)
    log = read_csv(tmp_path/'a'/'log.csv')
    assert {'epoch', 'train_loss', 'train_double', 'lr', 'epoch_s', 'val_iou', 'eval_s'} <= set(log[0])
    assert log[0]['train_double'] == pytest.approx(2 * log[0]['train_loss'], rel=1e-5)
    assert all(r['eval_s'] > 0 for r in log)                 # seconds the validation took, not a metric:
    assert 's' not in load_checkpoint(tmp_path/'a'/'best.pt')['metrics']     # best.pt's metrics are the val_* columns only

def test_max_steps_stops_and_still_writes_best_and_log(tmp_path):
    res = Trainer(TinyUNet(width=4), toy(40), toy(8, seed=1), CFG.replace(epochs=10, batch_size=1, max_steps=2), out=tmp_path, device='cpu').fit()
    assert res['steps'] == 2 and res['epochs'] == 1
    assert (tmp_path/'best.pt').exists() and len(read_csv(tmp_path/'log.csv')) == 1

class RoiData:
    "The batch protocol with a region of interest: (x, y, roi)."
    def __init__(self, d): self.d = d
    def __len__(self): return len(self.d)
    def to(self, device): return self
    def batch(self, idx, gen=None):
        x, y = self.d.batch(idx, gen)
        roi = torch.zeros_like(y); roi[..., 4:-4, 4:-4] = 1
        return x, y, roi

def test_roi_batches_reach_the_loss():
    seen = {}
    def loss_fn(logits, y, roi=None):
        seen['roi'] = roi
        return F.binary_cross_entropy_with_logits(logits, y)
    import torch.nn.functional as F
    Trainer(TinyUNet(width=4), RoiData(toy(8)), None, CFG.replace(epochs=1), loss_fn=loss_fn, device='cpu').fit()
    assert seen['roi'] is not None and seen['roi'].shape[1:] == (1, 32, 32)

def test_compiled_run_sends_only_full_batches_to_the_compiled_module(tmp_path, monkeypatch):
    # 20 images at batch 8: two full batches and one of 4 per epoch. The odd batch must run eagerly: a recompile for it
    # doubled the compile time of every real run. torch.compile is replaced by a recorder (no compile on a CPU test).
    seen = []
    class Rec(nn.Module):
        def __init__(self, m): super().__init__(); self.m = m
        def forward(self, x): seen.append(x.shape[0]); return self.m(x)
    monkeypatch.setattr(torch, 'compile', lambda m, **kw: Rec(m))
    cfg = CFG.replace(epochs=2, compile='reduce-overhead')
    t = Trainer(TinyUNet(width=4), toy(20), toy(8, seed=1), cfg, device='cpu')
    res = t.fit()
    assert seen == [8, 8, 8, 8], seen                 # 2 epochs x 2 full batches; the two batches of 4 went eagerly
    assert res['epochs'] == 2 and math.isfinite(res['history'][-1]['train_loss'])

def test_time_budget_slow_first_epoch_does_not_bend_the_schedule(tmp_path):
    "A slow first epoch (compilation) alone must not re-fit the schedule: on a device it once planned 3 of 300 epochs after"
    "epoch 1, so epoch 2 ran at 37 % of the learning rate before the next plan restored it."
    res = budget_run(tmp_path, lambda e: e == 0, 1.5, 12, 8.0).fit()
    lrs = [r['lr'] for r in res['history']]
    assert res['epochs'] == 12 and all(a >= b for a, b in zip(lrs, lrs[1:])), lrs     # poly: the lr never rises
