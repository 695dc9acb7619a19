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
    # `python3 -m medseg_tutor reproduce TABLE --out DIR ...`: writes DIR/table.md after $STUB_SLEEP s (default 1), its
    # argv to DIR/args.txt (joined) and DIR/argv.bin (NUL-separated); anything else: echo
    _stub(b, 'python3', 'if [ "$3" = reproduce ]; then out=$6; mkdir -p "$out"; sleep ${STUB_SLEEP:-1}; echo "table $4" > "$out/table.md"; '
                        'echo "args: $*" > "$out/args.txt"; printf "%s\\0" "$@" > "$out/argv.bin"; exit 0; fi\necho "py $*"\n')
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

@pytest.mark.parametrize('script', sorted(p.name for p in (ROOT/'scripts'/'device').glob('issue18_round*.sh')))
def test_round_scripts_ask_for_tables_and_flags_that_exist(stubs, tmp_path, script):
    "A typo in a round script (a table, a recipe flag or value) would waste a whole device session: every reproduce a round\n"
    "script starts, in each of its calls, names a known table, and every train command it plans parses with the real CLI."
    import shlex
    from medseg_tutor.cli import build_parser
    from medseg_tutor.train import reproduce as R
    work = tmp_path/'w'; (work/'scripts').mkdir(parents=True)
    subprocess.run(['cp', '-r', str(ROOT/'scripts'/'device'), str(work/'scripts')], check=True)
    seen = 0
    for call in (1, 2, 3):
        e = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", OUT=str(tmp_path/f'out{call}'), CALL=str(call), DEADLINE='100', STUB_SLEEP='0')
        p = subprocess.run(['bash', f'scripts/device/{script}'], cwd=work, env=e, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        for f in sorted((work/'runs').rglob('argv.bin')):
            argv = f.read_bytes().decode().split('\0')[:-1]
            assert argv[:3] == ['-m', 'medseg_tutor', 'reproduce'], argv
            ns = build_parser().parse_args(argv[2:])
            assert ns.table in R.TABLES, f"{script} (CALL={call}) asks for table '{ns.table}'"
            t = R.with_seeds(R.get_table(ns.table), ns.seeds.split(',')) if ns.seeds else R.get_table(ns.table)
            for row in R.plan(t, tmp_path/'plan', ns.data_root, train_args=shlex.split(ns.train_args)):
                for c in row['commands']:
                    try: build_parser().parse_args(shlex.split(c)[1:])
                    except SystemExit: pytest.fail(f"{script} (CALL={call}) plans a command the CLI refuses: {c}")
                    seen += 1
            f.unlink()
    assert seen, f"{script} started no reproduce"
