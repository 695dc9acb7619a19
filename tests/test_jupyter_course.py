"""The student's setup, end to end: `pip install -e ".[course]"`, `jupyter lab nbs/`, open the first notebook, run it.

Starts JupyterLab headless on 127.0.0.1 (a free port, a random token, its own config/runtime folders, no data
folder: `MEDSEG_TUTOR_DATA` unset, as on a student's laptop), then
1. runs the first code cells of `nbs/01_selective_scan.ipynb` in a kernel through the Jupyter server's own API
   (REST for the session, the kernel's websocket channel for `execute_request`s) and checks that none failed;
2. opens the notebook in headless Chromium (selenium, as tests/test_docs_site.py does), waits until JupyterLab shows
   its cells and saves a screenshot to build/jupyter_course/01_selective_scan.png.
The server is always shut down. Skipped only when JupyterLab is not installed (the `course` extra); the browser part
is skipped when Chromium/chromedriver/selenium are missing, unless MEDSEG_DOCS_REQUIRE=1 (tools/ci_docs.sh).
"""
import asyncio, functools, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.error, urllib.request, uuid
from pathlib import Path

import pytest

pytest.importorskip('jupyterlab', reason='JupyterLab is not installed (pip install -e ".[course]")')
pytest.importorskip('jupyter_server')
from tornado.websocket import websocket_connect  # a dependency of jupyter_server

ROOT = Path(__file__).resolve().parents[1]
NB = 'nbs/01_selective_scan.ipynb'
N_CELLS = 4            # the first code cells that run (cells flagged gpu/slow/notest are skipped, as in nbdev-test)
SHOTS = ROOT/'build'/'jupyter_course'
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
CHROMEDRIVER = shutil.which('chromedriver') or '/usr/bin/chromedriver'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Lab:
    "A JupyterLab server process and the calls the test needs."
    def __init__(self, tmp: Path):
        self.port, self.token = _free_port(), uuid.uuid4().hex
        self.base = f'http://127.0.0.1:{self.port}'
        env = {k: v for k, v in os.environ.items() if k != 'MEDSEG_TUTOR_DATA'}
        env.update(JUPYTER_CONFIG_DIR=str(tmp/'config'), JUPYTER_RUNTIME_DIR=str(tmp/'runtime'),
                   IPYTHONDIR=str(tmp/'ipython'), OMP_NUM_THREADS='1', MPLBACKEND='Agg', PYTHONUNBUFFERED='1')
        # user settings of this throw-away lab: no "get notified about Jupyter news?" prompt over the screenshot
        note = tmp/'lab-settings'/'@jupyterlab'/'apputils-extension'/'notification.jupyterlab-settings'
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(json.dumps({'fetchNews': 'false', 'checkForUpdates': False}))
        # and never an autosave: the notebook opened here is a source file of the repository
        dm = tmp/'lab-settings'/'@jupyterlab'/'docmanager-extension'/'plugin.jupyterlab-settings'
        dm.parent.mkdir(parents=True, exist_ok=True)
        dm.write_text(json.dumps({'autosave': False}))
        env['JUPYTERLAB_SETTINGS_DIR'] = str(tmp/'lab-settings')
        self.log = open(tmp/'jupyterlab.log', 'w+')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={self.port}',
             '--ServerApp.port_retries=0', f'--IdentityProvider.token={self.token}', f'--ServerApp.root_dir={ROOT}',
             '--LabApp.news_url=', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
             '--LabApp.extension_manager=readonly']  # nothing fetched from outside (no news, update or PyPI queries)
            + (['--allow-root'] if hasattr(os, 'geteuid') and os.geteuid() == 0 else []),  # CI containers run as root
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def api(self, method: str, path: str, body=None):
        req = urllib.request.Request(f'{self.base}{path}', method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={'Authorization': f'token {self.token}', 'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=20) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def wait_ready(self, timeout: float = 60):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None: break
            try: return self.api('GET', '/api/status')
            except (urllib.error.URLError, ConnectionError, OSError): time.sleep(0.3)
        raise AssertionError(f'JupyterLab did not answer within {timeout:.0f}s (exit code {self.proc.poll()}):\n{self.tail()}')

    def tail(self, n: int = 3000) -> str:
        self.log.flush(); self.log.seek(0)
        return self.log.read()[-n:]

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the server and the kernels it started
            try: self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL); self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope='module')
def lab():
    tmp = Path(tempfile.mkdtemp(prefix='medseg-jupyterlab-'))
    server = Lab(tmp)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def first_code_cells(n: int) -> list[str]:
    "The first `n` code cells of the notebook that nbdev-test would run."
    cells = json.loads((ROOT/NB).read_text(encoding='utf-8'))['cells']
    out = []
    for c in cells:
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        if c['cell_type'] != 'code' or not src.strip(): continue
        first = src.lstrip().splitlines()[0].replace(' ', '')
        if first.startswith(('#|gpu', '#|slow', '#|notest', '#|eval:false')): continue
        out.append(src)
        if len(out) == n: break
    return out


async def _run_cells(lab: Lab, kernel_id: str, cells: list[str], timeout: float = 45) -> list[dict]:
    "Execute each cell on the kernel's websocket; return one {'status', 'error', 'outputs'} per cell."
    ws = await websocket_connect(f'ws://127.0.0.1:{lab.port}/api/kernels/{kernel_id}/channels?token={lab.token}')
    results, session = [], uuid.uuid4().hex
    try:
        for code in cells:
            msg_id = uuid.uuid4().hex
            ws.write_message(json.dumps({
                'header': {'msg_id': msg_id, 'username': 'test', 'session': session, 'msg_type': 'execute_request',
                           'version': '5.3', 'date': ''},
                'parent_header': {}, 'metadata': {}, 'channel': 'shell', 'buffers': [],
                'content': {'code': code, 'silent': False, 'store_history': True, 'user_expressions': {},
                            'allow_stdin': False, 'stop_on_error': True}}))
            res, idle, deadline = {'status': None, 'error': None, 'outputs': 0}, False, time.time() + timeout
            while res['status'] is None or not idle:
                left = deadline - time.time()
                if left <= 0: raise AssertionError(f'cell did not finish within {timeout}s:\n{code[:300]}')
                raw = await asyncio.wait_for(ws.read_message(), left)
                if raw is None: raise AssertionError('the kernel websocket closed')
                if isinstance(raw, bytes): continue  # binary frames (buffers) are not needed here
                m = json.loads(raw)
                if (m.get('parent_header') or {}).get('msg_id') != msg_id: continue
                t = m['header']['msg_type']
                if t == 'execute_reply':
                    res['status'] = m['content']['status']
                    if res['status'] != 'ok': res['error'] = f"{m['content'].get('ename')}: {m['content'].get('evalue')}"
                elif t == 'error': res['error'] = f"{m['content']['ename']}: {m['content']['evalue']}"
                elif t in ('stream', 'execute_result', 'display_data'): res['outputs'] += 1
                elif t == 'status' and m['content']['execution_state'] == 'idle': idle = True
            results.append(res)
    finally:
        ws.close()
    return results


def test_first_cells_of_the_scan_notebook_run_in_a_jupyter_kernel(lab):
    t0 = time.time()
    s = lab.api('POST', '/api/sessions', {'path': NB, 'type': 'notebook', 'name': Path(NB).name, 'kernel': {'name': 'python3'}})
    try:
        cells = first_code_cells(N_CELLS)
        assert len(cells) == N_CELLS, f'{NB} has fewer than {N_CELLS} code cells that run without a GPU'
        results = asyncio.run(_run_cells(lab, s['kernel']['id'], cells))
        bad = [(i, r['error'] or r['status'], cells[i][:200]) for i, r in enumerate(results) if r['status'] != 'ok' or r['error']]
        assert not bad, f'cells of {NB} failed in JupyterLab\'s kernel (index, error, source): {bad}\nserver log:\n{lab.tail()}'
        # the kernel runs where the notebook is (nbs/), like nbdev-test, and without a data folder
        cwd = asyncio.run(_run_cells(lab, s['kernel']['id'], ['import os; assert os.path.basename(os.getcwd()) == "nbs", os.getcwd()\n'
                                                                    'assert "MEDSEG_TUTOR_DATA" not in os.environ']))
        assert cwd[0]['status'] == 'ok', cwd
    finally:
        lab.api('DELETE', f"/api/sessions/{s['id']}")
    assert time.time() - t0 < 90, f'running the first cells took {time.time() - t0:.0f}s'


def test_the_scan_notebook_opens_in_jupyterlab_in_chromium(lab):
    require = os.environ.get('MEDSEG_DOCS_REQUIRE') == '1'
    missing = pytest.fail if require else pytest.skip
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError: missing('selenium is not installed (the docs extra)')
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)): missing('chromium or chromedriver missing (tools/ci_docs.sh installs them)')
    profile = tempfile.mkdtemp(prefix='medseg-lab-chromium-')
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1280,900',
              '--no-first-run', '--disable-background-networking', f'--user-data-dir={profile}']: opts.add_argument(f)
    # a kernel session for the notebook first: JupyterLab attaches to it instead of asking which kernel to start
    s = lab.api('POST', '/api/sessions', {'path': NB, 'type': 'notebook', 'name': Path(NB).name, 'kernel': {'name': 'python3'}})
    before = (ROOT/NB).stat().st_mtime_ns
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        d.set_page_load_timeout(60)
        d.get(f'{lab.base}/lab/tree/{NB}?token={lab.token}')
        # JupyterLab re-renders while it starts: read the page with one script call at a time, never hold elements
        probe = '''const p = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden)");
            return p ? {cells: p.querySelectorAll(".jp-Cell").length, text: p.innerText.slice(0, 4000),
                        tabs: [...document.querySelectorAll(".lm-TabBar-tabLabel")].map(t => t.innerText),
                        dialog: !!document.querySelector(".jp-Dialog")} : null;'''
        deadline, seen = time.time() + 60, None
        while time.time() < deadline:
            seen = d.execute_script(probe)
            if seen and seen['cells'] >= 3 and 'selective scan' in seen['text'].lower(): break
            time.sleep(0.5)
        time.sleep(1)
        d.save_screenshot(str(SHOTS/'01_selective_scan.png'))
        assert seen and seen['cells'] >= 3 and 'selective scan' in seen['text'].lower(), (
            f'JupyterLab did not show the cells of {NB} (screenshot: {SHOTS/"01_selective_scan.png"}): {seen}')
        assert any(Path(NB).name in t for t in seen['tabs']), f'no tab for {Path(NB).name}: {seen["tabs"]}'
        assert not seen['dialog'], 'JupyterLab shows a dialog over the notebook (kernel choice?): see the screenshot'
        assert (ROOT/NB).stat().st_mtime_ns == before, f'JupyterLab wrote to {NB} (autosave must stay off in this test)'
    finally:
        d.quit(); shutil.rmtree(profile, ignore_errors=True)
        lab.api('DELETE', f"/api/sessions/{s['id']}")
