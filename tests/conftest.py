"Shared pytest fixtures: where the real public data lies (never shipped in the package)."
import os
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]

def shared_data():
    "The data root: $MEDSEG_TUTOR_DATA, else ../shared/data beside the checkout, else None."
    p = os.environ.get('MEDSEG_TUTOR_DATA')
    if p and Path(p).exists(): return Path(p)
    p = REPO.parent/'shared'/'data'
    return p if p.exists() else None

@pytest.fixture(scope='session')
def data_dir():
    p = shared_data()
    if p is None: pytest.skip('no real data here: set MEDSEG_TUTOR_DATA or put shared/data beside the checkout')
    return p


def run_cli(argv):
    "Run the CLI in this process: (exit code, stdout, stderr). Shared by the CLI tests."
    import contextlib, io
    from medseg_tutor.cli import main
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try: rc = main(argv)
        except SystemExit as e: rc = e.code
    return rc, out.getvalue(), err.getvalue()
