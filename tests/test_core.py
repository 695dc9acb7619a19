import os, subprocess, sys
from pathlib import Path
import pytest, torch
from medseg_tutor.core import (check_shape, ShapeError, data_root, DataRootError, DATA_ENV, atomic_save,
                               assert_close, seed_everything, MedsegError)
from medseg_tutor.cli import main

def test_check_shape_binds_and_rejects():
    sz = check_shape(torch.zeros(2, 3, 4), ('B', 'D', 'L'), 'u')
    assert sz == {'B': 2, 'D': 3, 'L': 4}
    with pytest.raises(ShapeError, match=r"delta has shape \(2, 5, 4\) but expected \(2, 3, 4\)"):
        check_shape(torch.zeros(2, 5, 4), ('B', 'D', 'L'), 'delta', sizes=sz)
    with pytest.raises(ValueError):  # ShapeError is a ValueError for library users
        check_shape(torch.zeros(2, 3), ('B', 'D', 'L'), 'z')

def test_data_root_argument_env_and_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(DataRootError) as e: data_root()
    assert DATA_ENV in str(e.value) and '--data-root' in str(e.value)
    (tmp_path/'busi').mkdir()
    assert data_root(tmp_path, 'busi') == tmp_path/'busi'
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_root(sub='busi') == tmp_path/'busi'
    assert data_root(tmp_path/'busi', 'busi') == tmp_path/'busi'
    with pytest.raises(DataRootError, match='sirst'): data_root(sub='sirst')
    with pytest.raises(DataRootError, match='does not exist'): data_root(tmp_path/'nope')

def test_atomic_save_keeps_old_file_on_crash(tmp_path):
    p = atomic_save({'a': 1}, tmp_path/'x.pt')
    class Boom:
        def __reduce__(self): raise RuntimeError('boom')
    with pytest.raises(RuntimeError): atomic_save({'a': Boom()}, p)
    assert torch.load(p) == {'a': 1}
    assert sorted(f.name for f in tmp_path.iterdir()) == ['x.pt']

def test_assert_close_can_fail():
    a = torch.randn(50)
    assert_close(a, a.clone())
    with pytest.raises(AssertionError, match='max abs diff'): assert_close(a + 0.1, a)

def test_seed_everything_reproducible():
    seed_everything(7); a = torch.randn(4)
    seed_everything(7); assert torch.equal(a, torch.randn(4))

def test_cli_info_and_errors(capsys):
    assert main(['info']) == 0
    out = capsys.readouterr().out
    assert 'torch' in out and 'mamba_ssm kernels' in out
    with pytest.raises(SystemExit) as e: main(['no-such-command'])
    assert e.value.code == 2

def test_console_script_help():
    exe = Path(sys.executable).parent/'medseg-tutor'
    if not exe.exists(): pytest.skip('console script not installed in this environment')
    r = subprocess.run([str(exe), '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and 'info' in r.stdout
