"""The SRSNet recipes compile with Inductor's mix-order reduction off (`SRSNET_COMPILE_OPTIONS`): with it on, the compiled
phase-2 step (bf16 + channels_last, batch 8, 256²) did not compile on an H200 (torch 2.11, 2026-11-30: Triton
"NameError('tmp12 is not defined')" in a mix-order reduction kernel); with it off it trained finite at ~3x eager.
These tests check that the setting reaches `torch.compile` (recipes -> TrainConfig -> Trainer -> compile_module, and
bench_srsnet's --mix-order), with `torch.compile` replaced by a recorder: nothing is compiled, each test takes < 1 s."""
import argparse, importlib.util
from pathlib import Path
import pytest, torch
from medseg_tutor.train.srsnet import SRSNET_COMPILE_OPTIONS
from medseg_tutor.train.recipes import RECIPES
from medseg_tutor.train.engine import Trainer, TrainConfig, compile_module
from medseg_tutor.data.tensors import TensorSegData
from medseg_tutor.nets.srsnet import SRSNet, SRSReconstructionNet, SRSSegmentationNet

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings('ignore:torch.compile on a CPU')   # the Trainer's advice; nothing compiles here
OFF = {'triton.mix_order_reduction': False}

@pytest.fixture
def compiled_kwargs(monkeypatch):
    "Replace torch.compile by a recorder of its keyword arguments that returns the module uncompiled."
    calls = []
    def fake_compile(model=None, **kw):
        calls.append(kw)
        return model
    monkeypatch.setattr(torch, 'compile', fake_compile)
    return calls

def load_bench():
    spec = importlib.util.spec_from_file_location('bench_srsnet_opts', ROOT/'bench'/'bench_srsnet.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def test_the_constant():
    assert SRSNET_COMPILE_OPTIONS == OFF

def test_every_srsnet_recipe_carries_the_options():
    srs = [n for n in RECIPES if n.startswith('srsnet-')]
    assert len(srs) >= 8, srs              # busi/sirst x phase1/phase2/phase2-nodpconv + folder phase1/phase2
    for n in srs:
        assert RECIPES[n].train.compile_options == OFF, (n, RECIPES[n].train.compile_options)
        # what run_trainer does with --compile: the recipe's TrainConfig with compile changed keeps the options
        assert RECIPES[n].train.replace(compile='reduce-overhead').check().compile_options == OFF, n

def test_mobileutr_recipes_carry_none():
    mu = [n for n, r in RECIPES.items() if r.model in ('mobileutr', 'mobileutr_l')]
    assert len(mu) >= 4, mu
    for n in mu: assert RECIPES[n].train.compile_options is None, (n, RECIPES[n].train.compile_options)

def tiny_srsnet():
    torch.manual_seed(0)
    R = SRSReconstructionNet(stem=8, widths=(8, 8, 16, 32), depths=(1, 1, 1, 1))
    S = SRSSegmentationNet(stem=8, widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), info_channels=32)
    return SRSNet(R, S)

def tiny_data():
    g = torch.Generator().manual_seed(0)
    return TensorSegData(torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g),
                         (torch.rand(4, 1, 16, 16, generator=g) > 0.8).to(torch.uint8))

def test_trainer_hands_the_options_and_no_mode(compiled_kwargs):
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=1, batch_size=2, max_steps=1, compile='reduce-overhead', compile_options=SRSNET_COMPILE_OPTIONS,
                      progress=False, verbose=False)
    tr = Trainer(tiny_srsnet(), tiny_data(), None, cfg, device='cpu')
    assert compiled_kwargs == [{'options': {'triton.cudagraphs': True, 'triton.mix_order_reduction': False}}], compiled_kwargs
    tr.fit()                                 # the (uncompiled) module behind the wrapper trains
    assert len(compiled_kwargs) == 1

def test_trainer_without_options_passes_the_mode(compiled_kwargs):
    "MobileUtr's recipes (no options): torch.compile gets the mode as before, no options."
    cfg = TrainConfig(epochs=1, batch_size=2, compile='reduce-overhead', progress=False, verbose=False)
    Trainer(tiny_srsnet(), tiny_data(), None, cfg, device='cpu')
    cfg = cfg.replace(compile=True)
    Trainer(tiny_srsnet(), tiny_data(), None, cfg, device='cpu')
    assert compiled_kwargs == [{'mode': 'reduce-overhead'}, {}], compiled_kwargs

def test_inductor_knows_the_option():
    "torch.compile checks option names when it is called: a misspelt one is an error, ours is not (nothing compiles here)."
    from torch._inductor import list_mode_options
    torch.compile(torch.nn.Linear(2, 2), options={**list_mode_options('reduce-overhead'), **SRSNET_COMPILE_OPTIONS})
    with pytest.raises(Exception, match='mix_order_reductio'):
        torch.compile(torch.nn.Linear(2, 2), options={'triton.mix_order_reductio': False})

def test_bench_flag_maps_to_the_options(compiled_kwargs):
    b = load_bench()
    assert b.compile_options('off') == OFF and b.compile_options('on') == {'triton.mix_order_reduction': True}
    assert 'OFF' in b.mix_order_note('off') and 'ON' in b.mix_order_note('on')
    want = {'off': False, 'on': True}
    for flag in ('off', 'on'):
        for cfg, mode_opts in (('ro', {'triton.cudagraphs': True}), ('compile', {})):
            compiled_kwargs.clear()
            a = argparse.Namespace(tiny=True, batch=1, size=16, mix_order=flag)
            b.setup('RS', cfg, a, torch.device('cpu'))
            assert compiled_kwargs == [{'options': {**mode_opts, 'triton.mix_order_reduction': want[flag]}}], (flag, cfg, compiled_kwargs)
        compiled_kwargs.clear()                      # per-block compile: every ResBlock gets the options too
        b.setup('R', 'regional', argparse.Namespace(tiny=True, batch=1, size=16, mix_order=flag), torch.device('cpu'))
        assert compiled_kwargs and all(kw == {'dynamic': False, 'options': {'triton.mix_order_reduction': want[flag]}}
                                       for kw in compiled_kwargs), compiled_kwargs
    compiled_kwargs.clear()                          # eager rows compile nothing
    b.setup('RS', 'bf16cl', argparse.Namespace(tiny=True, batch=1, size=16, mix_order='off'), torch.device('cpu'))
    assert compiled_kwargs == []

def test_bench_cli_default_is_off_and_header_says_so(tmp_path, capsys):
    torch.set_num_threads(1)
    b = load_bench()
    with pytest.raises(SystemExit): b.main(['--mix-order', 'maybe'])
    b.main(['--device', 'cpu', '--size', '16', '--batch', '1', '--steps', '1', '--warmup', '1', '--tiny',
            '--cells', 'fp32:R', '--out', str(tmp_path)])
    head = (tmp_path/'table.md').read_text().splitlines()[0]
    assert 'mix-order reduction OFF' in head, head
