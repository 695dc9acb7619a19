"""The SRS networks declare the Inductor options torch.compile must use for them (`inductor_options`, mix-order reduction
off: `medseg_tutor.nets.srsnet.SRSNET_COMPILE_OPTIONS`). With it on, the compiled phase-2 step (bf16 + channels_last,
batch 8, 256²) did not compile on an H200 (torch 2.11, 2026-11-30: Triton "NameError('tmp12 is not defined')" in a
mix-order reduction kernel); with it off it trained finite at ~3x eager.

`engine.compile_module` merges the mode's options, then those the compiled module and its submodules declare, then the
caller's (`TrainConfig.compile_options`). These tests check that an SRSNet from the registry reaches `torch.compile`
with the option off, with or without a recipe, that the caller wins, that MobileUtr keeps torch's defaults and that
parts that disagree are an error. `torch.compile` is replaced by a recorder: nothing is compiled, each test takes ~1 s."""
import argparse, importlib.util
from pathlib import Path
import pytest, torch, torch.nn as nn
from torch._inductor import list_mode_options
from medseg_tutor.core import MedsegError
from medseg_tutor.registry import create_model
from medseg_tutor.nets.srsnet import SRSNET_COMPILE_OPTIONS, SRSNet, SRSReconstructionNet, SRSSegmentationNet
from medseg_tutor.train.recipes import RECIPES
from medseg_tutor.train.engine import Trainer, TrainConfig, compile_module, declared_inductor_options
from medseg_tutor.data.tensors import TensorSegData

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings('ignore:torch.compile on a CPU')   # the Trainer's advice; nothing compiles here
OFF = {'triton.mix_order_reduction': False}
RO = {'triton.cudagraphs': True}                     # what mode='reduce-overhead' stands for (torch 2.13)

@pytest.fixture
def compiled(monkeypatch):
    "Replace torch.compile by a recorder of (module, keyword arguments) that returns the module uncompiled."
    calls = []
    def fake_compile(model=None, **kw):
        calls.append((model, kw))
        return model
    monkeypatch.setattr(torch, 'compile', fake_compile)
    return calls

def kwargs(calls): return [kw for _, kw in calls]

def tiny_srsnet(**kw):
    torch.manual_seed(0)
    R = SRSReconstructionNet(stem=8, widths=(8, 8, 16, 32), depths=(1, 1, 1, 1))
    S = SRSSegmentationNet(stem=8, widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), info_channels=32, **kw)
    return SRSNet(R, S)

def tiny_data():
    g = torch.Generator().manual_seed(0)
    return TensorSegData(torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g),
                         (torch.rand(4, 1, 16, 16, generator=g) > 0.8).to(torch.uint8))

def test_the_constant_and_its_old_home():
    from medseg_tutor.train import srsnet as T
    assert SRSNET_COMPILE_OPTIONS == OFF
    assert T.SRSNET_COMPILE_OPTIONS is SRSNET_COMPILE_OPTIONS and 'SRSNET_COMPILE_OPTIONS' in T.__all__

# (a) the networks declare it, from the registry, as compiled by the Trainer
@pytest.mark.parametrize('name,kw', [('srsnet_r', {}), ('srsnet_s', {}), ('srsnet', {}), ('srsnet', dict(use_dpconv=False))])
def test_registry_srs_networks_declare_the_options(name, kw):
    m = create_model(name, **kw)
    assert declared_inductor_options(m) == OFF, (name, kw)
    assert m.inductor_options == OFF, (name, kw)                  # the module itself, not only a part of it

def test_a_wrapper_carries_its_parts_options():
    class Wrapper(nn.Module):
        def __init__(self): super().__init__(); self.net = tiny_srsnet()
        def forward(self, x): return self.net(x)
    assert declared_inductor_options(Wrapper()) == OFF
    assert declared_inductor_options(nn.Sequential(nn.Identity(), SRSReconstructionNet(stem=8, widths=(8, 8, 8, 8), depths=(1, 1, 1, 1)))) == OFF

def test_ddp_wrapper_carries_the_options(tmp_path):
    "Under DDP the Trainer compiles DistributedDataParallel(model): the walk over submodules reaches the network."
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/pg', rank=0, world_size=1)
    try: assert declared_inductor_options(DDP(tiny_srsnet())) == OFF
    finally: dist.destroy_process_group()

@pytest.mark.parametrize('recipe,name', [('srsnet-busi-phase1', 'srsnet_r'), ('srsnet-busi-phase2', 'srsnet'),
                                         ('srsnet-folder-phase2', 'srsnet')])
def test_trainer_compiles_the_model_with_the_options(compiled, recipe, name):
    "A recipe's config with --compile: the recipes set no compile_options, the network's own reach torch.compile."
    cfg = RECIPES[recipe].train.replace(compile='reduce-overhead', epochs=1, batch_size=2, progress=False, verbose=False)
    assert cfg.compile_options is None
    model = create_model(name)
    tr = Trainer(model, tiny_data(), None, cfg, device='cpu')
    assert len(compiled) == 1 and compiled[0][0] is model, compiled          # the Trainer compiles the model itself
    assert kwargs(compiled) == [{'options': {**RO, **OFF}}], kwargs(compiled)
    assert tr.net.compiled is model

def test_own_trainer_without_recipe_trains(compiled):
    "The user of the issue: create_model + their own TrainConfig(compile='reduce-overhead'), no recipe, no options."
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=1, batch_size=2, max_steps=1, compile='reduce-overhead', progress=False, verbose=False)
    tr = Trainer(tiny_srsnet(), tiny_data(), None, cfg, device='cpu')
    assert kwargs(compiled) == [{'options': {**RO, **OFF}}], kwargs(compiled)
    tr.fit()                                 # the (uncompiled) module behind the wrapper trains
    assert len(compiled) == 1

def test_no_recipe_sets_compile_options():
    "The networks carry the option; a recipe that set it again would hide a network that lost it."
    assert sum(n.startswith('srsnet-') for n in RECIPES) >= 8
    assert {n: r.train.compile_options for n, r in RECIPES.items() if r.train.compile_options is not None} == {}

# (b) compile_module hands triton.mix_order_reduction=False to torch.compile, in every mode
@pytest.mark.parametrize('mode', [True, 'default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs'])
def test_compile_module_passes_the_options(compiled, mode):
    m = create_model('srsnet')
    assert compile_module(m, mode) is m
    want = {**list_mode_options('default' if mode is True else mode), **OFF}
    assert kwargs(compiled) == [{'options': want}], kwargs(compiled)
    assert compiled[0][1]['options']['triton.mix_order_reduction'] is False

def test_train_throughput_uses_the_options(compiled):
    from medseg_tutor.train.engine import train_throughput
    torch.set_num_threads(1)
    train_throughput(tiny_srsnet(), batch_size=1, size=16, compile='reduce-overhead', steps=1, warmup=0, device='cpu')
    assert kwargs(compiled) == [{'options': {**RO, **OFF}}], kwargs(compiled)

# (c) the caller wins
def test_explicit_options_override_the_network(compiled):
    m = create_model('srsnet_r')
    compile_module(m, 'reduce-overhead', {'triton.mix_order_reduction': True})
    compile_module(m, 'reduce-overhead', {'triton.cudagraphs': False})
    assert kwargs(compiled) == [{'options': {**RO, 'triton.mix_order_reduction': True}},
                                {'options': {'triton.cudagraphs': False, **OFF}}], kwargs(compiled)
    compiled.clear()
    cfg = TrainConfig(epochs=1, batch_size=2, compile='reduce-overhead', compile_options={'triton.mix_order_reduction': True},
                      progress=False, verbose=False)
    Trainer(tiny_srsnet(), tiny_data(), None, cfg, device='cpu')
    assert kwargs(compiled) == [{'options': {**RO, 'triton.mix_order_reduction': True}}], kwargs(compiled)
    assert SRSNET_COMPILE_OPTIONS == OFF                       # merging never writes into the declaration

# (d) a network that declares nothing gets torch's defaults
@pytest.mark.parametrize('name', ['mobileutr', 'mobileutr_l'])
def test_mobileutr_gets_torch_defaults(compiled, name):
    m = create_model(name)
    assert declared_inductor_options(m) == {}
    compile_module(m, 'reduce-overhead'); compile_module(m, True)
    cfg = TrainConfig(epochs=1, batch_size=2, compile='reduce-overhead', progress=False, verbose=False)
    Trainer(m, tiny_data(), None, cfg, device='cpu')
    assert kwargs(compiled) == [{'mode': 'reduce-overhead'}, {}, {'mode': 'reduce-overhead'}], kwargs(compiled)

# (e) parts that disagree
class _Off(nn.Linear): inductor_options = {'triton.mix_order_reduction': False}
class _On(nn.Linear): inductor_options = {'triton.mix_order_reduction': True, 'triton.cudagraphs': False}

def test_conflicting_parts_raise(compiled):
    both = nn.Sequential(_Off(2, 2), _On(2, 2))
    with pytest.raises(MedsegError, match=r"'triton.mix_order_reduction'.*submodule '0' \(_Off\) declares False.*submodule '1' \(_On\) declares True"):
        compile_module(both, 'reduce-overhead')
    with pytest.raises(MedsegError, match='mix_order_reduction'):
        Trainer(nn.Sequential(tiny_srsnet(), _On(2, 2)), tiny_data(), None,
                TrainConfig(epochs=1, batch_size=2, compile=True, progress=False, verbose=False), device='cpu')
    assert compiled == []                                      # nothing reached torch.compile

def test_the_caller_settles_a_conflict(compiled):
    both = nn.Sequential(_Off(2, 2), _On(2, 2))
    compile_module(both, True, {'triton.mix_order_reduction': False})
    assert kwargs(compiled) == [{'options': {'triton.mix_order_reduction': False, 'triton.cudagraphs': False}}], kwargs(compiled)
    assert declared_inductor_options(nn.Sequential(_Off(2, 2), _Off(2, 2), tiny_srsnet())) == OFF   # agreeing parts: fine

def test_inductor_knows_the_option():
    "torch.compile checks option names when it is called: a misspelt one is an error, ours is not (nothing compiles here)."
    torch.compile(torch.nn.Linear(2, 2), options={**list_mode_options('reduce-overhead'), **SRSNET_COMPILE_OPTIONS})
    with pytest.raises(Exception, match='mix_order_reductio'):
        torch.compile(torch.nn.Linear(2, 2), options={'triton.mix_order_reductio': False})

# bench/bench_srsnet.py and bench/check_srsnet_compile.py: --mix-order off = the networks' own, on = overridden
def load_bench(name='bench_srsnet'):
    spec = importlib.util.spec_from_file_location(f'{name}_opts', ROOT/'bench'/f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def test_bench_flag_maps_to_the_options(compiled):
    b = load_bench()
    assert b.compile_options('off') == {} and b.compile_options('on') == {'triton.mix_order_reduction': True}
    assert 'OFF' in b.mix_order_note('off') and 'ON' in b.mix_order_note('on')
    want = {'off': False, 'on': True}
    for flag in ('off', 'on'):
        for cfg, mode_opts in (('ro', RO), ('compile', {})):
            compiled.clear()
            a = argparse.Namespace(tiny=True, batch=1, size=16, mix_order=flag)
            b.setup('RS', cfg, a, torch.device('cpu'))
            assert kwargs(compiled) == [{'options': {**mode_opts, 'triton.mix_order_reduction': want[flag]}}], (flag, cfg, compiled)
        compiled.clear()                      # per-block compile: every ResBlock gets the network's options (or the override)
        b.setup('R', 'regional', argparse.Namespace(tiny=True, batch=1, size=16, mix_order=flag), torch.device('cpu'))
        assert compiled and all(kw == {'dynamic': False, 'options': {'triton.mix_order_reduction': want[flag]}}
                                for kw in kwargs(compiled)), compiled
    compiled.clear()                          # eager rows compile nothing
    b.setup('RS', 'bf16cl', argparse.Namespace(tiny=True, batch=1, size=16, mix_order='off'), torch.device('cpu'))
    assert compiled == []

def test_check_script_gates_compile_as_the_network(compiled, monkeypatch):
    "check_srsnet_compile's gates (parts of the SRS networks, compiled alone) get the networks' options, or the override."
    monkeypatch.syspath_prepend(str(ROOT/'bench'))
    c = load_bench('check_srsnet_compile')
    torch.set_num_threads(1)
    for flag, want in (('off', False), ('on', True)):
        compiled.clear()
        c.gates(torch.device('cpu'), flag)
        assert len(compiled) == 3 and all(kw == {'options': {'triton.mix_order_reduction': want}} for kw in kwargs(compiled)), compiled

def test_bench_cli_default_is_off_and_header_says_so(tmp_path, capsys):
    torch.set_num_threads(1)
    b = load_bench()
    with pytest.raises(SystemExit): b.main(['--mix-order', 'maybe'])
    b.main(['--device', 'cpu', '--size', '16', '--batch', '1', '--steps', '1', '--warmup', '1', '--tiny',
            '--cells', 'fp32:R', '--out', str(tmp_path)])
    head = (tmp_path/'table.md').read_text().splitlines()[0]
    assert 'mix-order reduction OFF' in head, head
