"""scripts/device/tables.sh with stand-in commands (no GPU): jobs per GPU, the AFTER<gpu> follow-up once a GPU's table
returns, '-' jobs that only run the follow-up, and what comes back under OUT."""
import os, stat, subprocess, tarfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def _stub(d:Path, name:str, body:str):
    p = d/name; p.write_text('#!/usr/bin/env bash\n' + body); p.chmod(p.stat().st_mode | stat.S_IEXEC)

@pytest.fixture
def stubs(tmp_path):
    b = tmp_path/'bin'; b.mkdir()
    _stub(b, 'nvidia-smi', 'echo "0, stub GPU"\n')
    _stub(b, 'nvidia-cuda-mps-control', 'exit 1\n')           # MPS unavailable: the script must carry on without it
    # `python3 -m medseg_tutor reproduce TABLE --out DIR ...`: writes DIR/table.md after a short while; anything else: echo
    _stub(b, 'python3', 'if [ "$3" = reproduce ]; then out=$6; mkdir -p "$out"; sleep 1; echo "table $4" > "$out/table.md"; '
                        'echo "args: $*" > "$out/args.txt"; exit 0; fi\necho "py $*"\n')
    return b

def _run(stubs, tmp_path, jobs, **env):
    e = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", OUT=str(tmp_path/'out'), R=str(tmp_path/'runs'),
             TORCHINDUCTOR_CACHE_DIR=str(tmp_path/'ic'), DEADLINE='100')
    e.update(env)
    p = subprocess.run(['bash', 'scripts/device/tables.sh', *jobs], cwd=ROOT, env=e, capture_output=True, text=True, timeout=120)
    return p, (tmp_path/'out'/'tables.log').read_text()

def test_jobs_after_and_dash_jobs(stubs, tmp_path):
    p, log = _run(stubs, tmp_path, ['0|busi-mobileutr|mu|3|1|--seeds 42|--augment released', '1|-|bench||||'],
                  AFTER0='echo "after0 on $CUDA_VISIBLE_DEVICES with $LEFT s"', AFTER1='echo "after1 on $GPU"', MPS='1')
    assert p.returncode == 0, p.stderr
    args = (tmp_path/'runs'/'mu'/'args.txt').read_text()
    assert '--gpus 0' in args and '--per-gpu 1' in args and '--seeds 42' in args and '--augment released' in args   # MPS asked for, unavailable: K_PLAIN
    assert 'MPS unavailable' in log
    # GPU 0's follow-up runs after its table returned, on that GPU; GPU 1 has no table and goes straight to its follow-up
    assert 'after0 on 0 with' in log and 'after1 on 1' in log
    assert log.index('GPU 1 free') < log.index('GPU 0 free')
    assert not (tmp_path/'runs'/'bench').exists()
    with tarfile.open(tmp_path/'out'/'mu.tar.gz') as t: assert 'mu/table.md' in t.getnames()
    assert not (tmp_path/'out'/'bench.tar.gz').exists()        # a '-' job has no run folder to send back

def test_no_follow_up_after_the_deadline(stubs, tmp_path):
    p, log = _run(stubs, tmp_path, ['0|busi-mobileutr|mu|3|1||'], DEADLINE='30', AFTER0='echo should-not-run')
    assert p.returncode == 0, p.stderr
    assert 'should-not-run' not in log                         # under 60 s left: no follow-up starts

def test_one_job_over_two_gpus(stubs, tmp_path):
    "A job on GPUs '0,1' hands both to one reproduce (its scheduler spreads the runs) and reads its follow-up from AFTER0_1."
    p, log = _run(stubs, tmp_path, ['0,1|sirst-srsnet|srs|3|1|--data-root .devcache/sirst256.npz|'], AFTER0_1='echo "after01 on $GPU"')
    assert p.returncode == 0, p.stderr
    args = (tmp_path/'runs'/'srs'/'args.txt').read_text()
    assert '--gpus 0,1' in args and '--data-root .devcache/sirst256.npz' in args
    assert 'after01 on 0,1' in log and 'invalid variable name' not in p.stderr + log
