"""The finite check without a host sync per step (`TrainConfig.finite_check_every`): with a fused optimiser a
non-finite step is skipped on the device (the optimiser's `found_inf`), and the host looks every k steps and at the end
of each epoch. These tests run the deferred path on a CPU by asking for the fused optimiser there, and compare it with
the per-step check (k = 1): same weights, same errors, a few steps later at most."""
import pytest, torch
from medseg_tutor.core import MedsegError, DataError
from medseg_tutor.train.engine import Trainer, TrainConfig, TinyUNet, NonFiniteError, seg_step
from medseg_tutor.data.tensors import TensorSegData

torch.set_num_threads(1)

class Fused(Trainer):
    "The trainer with the fused optimiser a GPU gets, on a CPU; records the steps that went the deferred way."
    def _optimizer(self, fused=None): return super()._optimizer(fused=True)
    def _record(self, ok, loss, batch):
        self.deferred_steps = getattr(self, 'deferred_steps', []) + [self.global_step + 1]
        return super()._record(ok, loss, batch)

def toy(n=16, seed=0, nan_at=None):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (n, 1, 16, 16), generator=g).float() / 255
    if nan_at is not None: imgs[nan_at, 0, 3, 3] = float('nan')
    return TensorSegData(imgs, (torch.rand(n, 1, 16, 16, generator=g) > 0.7).to(torch.uint8), in_channels=1, augment=False)

CFG = TrainConfig(epochs=3, batch_size=4, lr=0.05, momentum=0.9, weight_decay=1e-4, progress=False, verbose=False)

def nan_at(steps):
    "A step function whose loss (and so every gradient) is NaN at the given 1-based global steps."
    def step(t, batch):
        loss, logs = seg_step(t, batch)
        return (loss * float('nan') if t.global_step + 1 in steps else loss), logs
    return step

def trained(cls, bad, every, **kw):
    torch.manual_seed(0)
    t = cls(TinyUNet(1, 1, width=4), toy(), None, CFG.replace(finite_check_every=every, **kw), step=nan_at(bad), device='cpu')
    t.fit()
    return t

def weights(t): return {k: v.clone() for k, v in t.model.state_dict().items()}

def test_deferred_steps_skip_exactly_the_updates_the_synced_check_skips():
    bad = {3, 4, 9}
    d, s, plain = trained(Fused, bad, 4), trained(Fused, bad, 1), trained(Trainer, bad, 4)
    assert d.deferred_steps == list(range(2, 13)) and not getattr(s, 'deferred_steps', [])   # 12 steps, the first synced
    wd, ws, wp = weights(d), weights(s), weights(plain)
    assert all(torch.isfinite(v).all() for v in wd.values() if v.is_floating_point())
    assert all(torch.equal(wd[k], ws[k]) for k in wd)          # same fused kernel, same skipped steps: bit for bit
    mom = lambda t: [t.opt.state[p]['momentum_buffer'] for p in t.model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(mom(d), mom(s)))
    # the CPU's default (not fused) optimiser, synced every step, skips the same steps: same weights up to rounding
    assert all(torch.allclose(wd[k].float(), wp[k].float(), rtol=1e-4, atol=1e-6) for k in wd)
    # and the skipped steps mattered: without them the weights differ
    assert any(not torch.allclose(wd[k].float(), weights(trained(Fused, set(), 4))[k].float()) for k in wd if wd[k].is_floating_point())

def test_the_first_step_is_synced_so_the_momentum_starts_from_a_real_gradient():
    d, s = trained(Fused, {1}, 4), trained(Fused, {1}, 1)
    assert 1 not in d.deferred_steps and 2 not in d.deferred_steps and d.deferred_steps[0] == 3
    assert all(torch.equal(a, b) for a, b in zip(weights(d).values(), weights(s).values()))

def test_a_run_of_nonfinite_steps_stops_at_the_next_look():
    bad = set(range(3, 100))
    with pytest.raises(NonFiniteError, match=r'6 steps in a row .*steps 5-8') as e:
        trained(Fused, bad, 4, nonfinite_patience=2)
    with pytest.raises(NonFiniteError, match=r'3 steps in a row .*step 5\b'):
        trained(Fused, bad, 1, nonfinite_patience=2)
    assert 'lower --lr' in str(e.value)
    # a run that ends before the look still counts: steps 5-7 bad, step 8 good, the look at step 8
    with pytest.raises(NonFiniteError, match=r'3 steps in a row .*epoch 2, steps 5-8'):
        trained(Fused, {5, 6, 7}, 4, nonfinite_patience=2)

def test_patience_not_reached_within_a_window_trains_on():
    t = trained(Fused, {3, 4}, 4, nonfinite_patience=2)       # 2 in a row, patience 2: as the synced check
    assert t.epoch == 3 and t._bad_steps == 0

def test_a_nan_input_is_named_with_its_step_before_anything_of_the_epoch_is_saved(tmp_path):
    data = toy(nan_at=9)
    probe = Fused(TinyUNet(1, 1, width=4), data, None, CFG, device='cpu')
    step = next(i + 1 for i, b in enumerate(probe.batches(0)) if not torch.isfinite(b[0]).all())
    assert step > 1, 'pick a NaN image that is not in the first batch, so that the deferred path sees it'
    t = Fused(TinyUNet(1, 1, width=4), data, None, CFG, out=tmp_path/'r', device='cpu')
    with pytest.raises(DataError, match=rf'epoch 1, step {step} holds NaN/Inf values \(batch item 0\)'):
        t.fit()
    assert step in t.deferred_steps and not (tmp_path/'r'/'last.pt').exists()

def test_a_deferred_step_never_waits_for_the_device(monkeypatch):
    t = Fused(TinyUNet(1, 1, width=4), toy(), None, CFG, device='cpu')
    batches = list(t.batches(0))
    t.train_step(batches[0])                                  # the first step is synced (and creates the momentum)
    def refuse(*a, **k): raise AssertionError('a host sync in a deferred step')
    for name in ('__bool__', 'item', 'tolist', '__float__', '__int__'): monkeypatch.setattr(torch.Tensor, name, refuse)
    for b in batches[1:3]: t.train_step(b)                    # steps 2 and 3: no look (every 16)
    monkeypatch.undo()
    assert t.deferred_steps == [2, 3] and t._watch is not None
    t.check_finite(); assert t._watch is None

def test_finite_check_every_is_checked():
    with pytest.raises(MedsegError, match='finite_check_every must be >= 1'): TrainConfig(finite_check_every=0).check()

def test_fp16_and_unfused_optimisers_keep_the_per_step_check():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')                      # fp16 on a CPU warns that it is slow
        fp16 = Fused(TinyUNet(1, 1, width=4), toy(), None, CFG.replace(amp='fp16'), device='cpu')
    fused, plain = Fused(TinyUNet(1, 1, width=4), toy(), None, CFG, device='cpu'), Trainer(TinyUNet(1, 1, width=4), toy(), None, CFG, device='cpu')
    for t in (fp16, fused, plain): t._good_step = True
    assert fused._deferred() and not fp16._deferred() and not plain._deferred()

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (the fused kernels there are the ones training uses)')
@pytest.mark.parametrize('optimizer', ['sgd', 'adamw'])
def test_on_a_gpu_the_deferred_step_skips_the_same_updates(optimizer):
    "On CUDA the engine picks the fused optimiser itself: deferred (every 4) and synced (every 1) give the same weights\n"
    "(up to the GPU's non-deterministic convolution gradients), finite although three steps had NaN gradients."
    def run(every):
        torch.manual_seed(0)
        t = Trainer(TinyUNet(1, 1, width=4), toy(), None, CFG.replace(optimizer=optimizer, lr=0.01 if optimizer == 'sgd' else 1e-3,
                    finite_check_every=every), step=nan_at({3, 4, 9}), device='cuda')
        t.fit()
        return t, {k: v.cpu() for k, v in t.model.state_dict().items()}
    (d, wd), (s, ws) = run(4), run(1)
    assert all(g.get('fused') for g in d.opt.param_groups), 'this torch has no fused optimiser on CUDA'
    assert all(torch.isfinite(v).all() for v in wd.values() if v.is_floating_point())
    assert all(torch.allclose(wd[k].float(), ws[k].float(), rtol=1e-4, atol=1e-6) for k in wd)

def test_the_host_looks_every_k_steps_within_an_epoch():
    torch.manual_seed(0)
    t = Fused(TinyUNet(1, 1, width=4), toy(), None, CFG.replace(batch_size=2, finite_check_every=2, nonfinite_patience=0),
              step=nan_at({3}), device='cpu')                 # 8 steps per epoch; looks at steps 2, 4, 6, 8
    with pytest.raises(NonFiniteError, match=r'1 steps in a row .*epoch 1, steps 3-4'):
        t.fit()
    assert t.global_step == 4
