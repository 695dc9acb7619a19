"""The documentation site, opened in a real browser (headless Chromium driven by selenium).

Build the site first (`python tools/build_docs.py`, or `bash tools/ci_docs.sh` which also installs Chromium).
The browser tests are skipped, with the reason, when the built site, Chromium/chromedriver or selenium is missing;
the unit tests of the builder (tools/build_docs.py) at the end of the file always run.
Screenshots go to build/docs_screens/ (git-ignored); look at them after a change to the site.
"""
import functools, http.server, os, shutil, socketserver, tempfile, threading, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get('MEDSEG_DOCS_SITE', ROOT/'site'))
SHOTS = Path(os.environ.get('MEDSEG_DOCS_SCREENS', ROOT/'build'/'docs_screens'))
SCAN_NB = ROOT/'nbs'/'01_selective_scan.ipynb'
SCAN_PAGE = 'selective_scan.html'  # nbdev names the page after the notebook without its number
PHONE_WIDTH = 420  # no page may be wider than a phone screen
# Method notebooks (the tracks' derivations): each page must have an "Exercises" heading.
METHOD_NBS = ['01_selective_scan', '02_mamba_block', '10_blocks.convutr', '11_blocks.lgl', '12_nets.mobileutr',
              '20_blocks.dpconv', '21_nets.srsnet', '29_blocks.masked', '30_mim.masking', '31_mim.s6t',
              '32_nets.hymamba', '33_mim.pretrain', '34_mim.finetune']
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
CHROMEDRIVER = shutil.which('chromedriver') or '/usr/bin/chromedriver'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run', '--disable-dev-shm-usage', '--window-size=1280,900', '--hide-scrollbars']

# tools/ci_docs.sh sets MEDSEG_DOCS_REQUIRE=1: there a missing prerequisite is a failure, not a skip.
# The browser tests skip (or fail) through their fixtures; the builder's unit tests at the end always run.
def _skip_reason():
    try: import selenium  # noqa: F401
    except ImportError: return 'selenium is not installed (pip install -r docs/requirements.txt; the docs extra)'
    if not (SITE/'index.html').exists(): return f'built site missing: {SITE}/index.html (run `python tools/build_docs.py`)'
    newest = max((p for p in (ROOT/'nbs').glob('*.ipynb')), key=lambda p: p.stat().st_mtime, default=None)
    if newest and (SITE/'index.html').stat().st_mtime < newest.stat().st_mtime and not os.environ.get('MEDSEG_DOCS_ALLOW_STALE'):
        return (f'built site is older than nbs/{newest.name}: rebuild it (`python tools/build_docs.py`), '
                'or set MEDSEG_DOCS_ALLOW_STALE=1 to test it anyway')
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return 'chromium or chromedriver missing (apt-get install -y chromium chromium-driver, or run tools/ci_docs.sh)'
    return None


SKIP = _skip_reason()
_missing = pytest.fail if os.environ.get('MEDSEG_DOCS_REQUIRE') == '1' else pytest.skip
if SKIP is None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By


class _Handler(http.server.SimpleHTTPRequestHandler):
    errors: list = []
    def log_message(self, *a): pass
    def send_error(self, code, *a, **k):
        self.errors.append((code, self.path)); return super().send_error(code, *a, **k)


@pytest.fixture(scope='module')
def server():
    "The site on a local static web server (search and MathJax fonts need http://, not file://)."
    if SKIP: _missing(SKIP)
    h = functools.partial(_Handler, directory=str(SITE))
    httpd = socketserver.ThreadingTCPServer(('127.0.0.1', 0), h)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}/'
    httpd.shutdown(); httpd.server_close()


@pytest.fixture(scope='module')
def browser():
    if SKIP: _missing(SKIP)
    profile = tempfile.mkdtemp(prefix='medseg-docs-chromium-')
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f'--user-data-dir={profile}']: opts.add_argument(f)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60); d.set_script_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield d
    d.quit(); shutil.rmtree(profile, ignore_errors=True)


def page_of(nb: Path) -> str:
    "nbdev's page name for a notebook: `01_selective_scan.ipynb` -> `selective_scan.html`, `00a_notation` -> `notation`."
    import re
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb.stem.lower()) + '.html'


def notebooks():
    return [p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.'))]


def pages():
    return sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob('*.html')
                  if p.name != '404.html' and not p.relative_to(SITE).parts[0] in ('assets', 'search'))


def load(d, url):
    "Open `url`, load lazy images, wait for MathJax to finish typesetting; return this page's console messages."
    d.get_log('browser')  # drop messages of the previous page
    d.get(url)
    d.execute_async_script('''const done = arguments[arguments.length - 1];
        document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager');
        // decode() settles once the image is loaded and decoded (or failed): no race with lazy loading on a busy machine
        const imgs = [...document.images].map(i => i.decode().catch(() => null));
        const mj = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
        Promise.all([mj, ...imgs.filter(Boolean)]).then(() => setTimeout(done, 100), () => done());''')
    return d.get_log('browser')


def shot(d, name):
    time.sleep(0.4)  # let the header's title transition and smooth scrolling settle
    d.save_screenshot(str(SHOTS/f'{name}.png'))


def test_every_page_loads_without_missing_resources_or_console_errors(server, browser):
    d, problems = browser, []
    assert len(pages()) >= 3, pages()
    for page in pages():
        _Handler.errors.clear()
        logs = load(d, server + page)
        bad = [e['message'] for e in logs if e['level'] in ('SEVERE', 'WARNING')]
        if bad: problems.append(f'{page}: console: {bad}')
        if _Handler.errors: problems.append(f'{page}: HTTP errors: {_Handler.errors}')
        remote = d.execute_script('return performance.getEntriesByType("resource").map(e => e.name)'
                                  '.filter(n => !n.startsWith(location.origin) && !n.startsWith("data:"))')
        if remote: problems.append(f'{page}: fetched from outside the site: {remote}')
        broken = d.execute_script('return [...document.images].filter(i => !i.naturalWidth).map(i => i.src)')
        if broken:   # on a busy machine an image can still be undecoded here: load each suspect once more, keep real failures
            broken = d.execute_async_script('''const done = arguments[arguments.length - 1];
                const bad = [...document.images].filter(i => !i.naturalWidth);
                Promise.all(bad.map(i => new Promise(r => { const j = new Image();
                    j.onload = () => r(j.naturalWidth ? null : i.src); j.onerror = () => r(i.src); j.src = i.src; })))
                  .then(v => done(v.filter(Boolean)));''')
        if broken: problems.append(f'{page}: broken images: {broken}')
        tex_errors = d.execute_script('''return [...document.querySelectorAll("mjx-merror")].map(e => {
            const c = e.closest("mjx-container"), items = MathJax.startup.document.getMathItemsWithin(c.parentNode);
            return (e.getAttribute("data-mjx-error") || "TeX error") + " in " +
                   JSON.stringify(items.length ? items[0].math : c.textContent).slice(0, 160); })''')
        if tex_errors:
            hint = (' (control characters such as \\u0007 or a tab in the TeX: the markdown was probably written from '
                    'a Python string that is not raw, so \\a and \\t became escapes)') if '\\u00' in str(tex_errors) else ''
            problems.append(f'{page}: MathJax could not typeset: {tex_errors}{hint}')
        title = d.find_element(By.CSS_SELECTOR, '.md-content h1').text
        if not title.strip(): problems.append(f'{page}: no title')
        shot(d, page.replace('/', '_')[:-5])
    assert not problems, '\n'.join(problems)


def _scan_page(server, d):
    "The selective-scan notebook's page; until that notebook exists, the first page with both maths and a plot."
    if (SITE/SCAN_PAGE).exists() or SCAN_NB.exists(): return SCAN_PAGE
    for page in pages():
        load(d, server + page)
        if d.find_elements(By.CSS_SELECTOR, '.md-content mjx-container') and \
           d.find_elements(By.CSS_SELECTOR, '.md-content figure.nb-figure img'): return page
    pytest.skip(f'{SCAN_NB.name} is not written yet and no other page has both maths and a plot')


def test_scan_page_shows_a_rendered_equation_and_a_plot(server, browser):
    d = browser
    page = _scan_page(server, d)
    assert (SITE/page).exists(), f'{page} missing from the site although {SCAN_NB.name} exists'
    load(d, server + page)
    eqs = [e for e in d.find_elements(By.CSS_SELECTOR, '.md-content mjx-container') if e.is_displayed()]
    assert eqs, f'no equation typeset by MathJax on {page}'
    eq = eqs[0]
    d.execute_script('arguments[0].scrollIntoView({block: "center"})', eq)
    assert eq.size['width'] > 5 and eq.size['height'] > 5, eq.size
    # MathJax drew glyphs with its own (bundled) fonts, not a fallback: the font face must have loaded
    assert d.execute_script('return [...document.fonts].some(f => f.family.startsWith("MJXTEX") && f.status === "loaded")'), \
        'MathJax fonts did not load'
    shot(d, f'scan_equation__{page[:-5]}')
    imgs = [i for i in d.find_elements(By.CSS_SELECTOR, '.md-content figure.nb-figure img') if i.is_displayed()]
    assert imgs, f'no plot on {page}'
    img = imgs[0]
    d.execute_script('arguments[0].scrollIntoView({block: "center"})', img)
    assert d.execute_script('return arguments[0].complete && arguments[0].naturalWidth', img) > 50
    assert img.size['width'] > 100 and img.size['height'] > 50, img.size
    shot(d, f'scan_plot__{page[:-5]}')


def test_api_reference_lists_selective_scan(server, browser):
    d = browser
    load(d, server + 'api.html')
    shot(d, 'api_reference')
    names = d.execute_script('return [...document.querySelectorAll(".md-content h3, .md-content h4")].map(h => h.id)')
    assert 'check_shape' in names, names[:20]  # the API of the core notebook is always there
    if not SCAN_NB.exists(): pytest.skip(f'{SCAN_NB.name} is not written yet, so there is no selective_scan to list')
    assert 'selective_scan' in names, f'selective_scan missing from the API reference: {names}'
    h = d.find_element(By.ID, 'selective_scan')
    assert h.is_displayed() and 'selective_scan' in h.text
    sig = h.find_element(By.XPATH, 'following::pre[1]').text
    assert sig.startswith('def selective_scan('), sig


def test_search_finds_a_function(server, browser):
    d = browser
    load(d, server + 'index.html')
    d.find_element(By.CSS_SELECTOR, 'label.md-search__icon, .md-search__input').click()
    box = d.find_element(By.CSS_SELECTOR, 'input.md-search__input')
    box.send_keys('check_shape')
    deadline = time.time() + 15
    while time.time() < deadline and not d.find_elements(By.CSS_SELECTOR, '.md-search-result__item'): time.sleep(0.2)
    hits = d.find_elements(By.CSS_SELECTOR, '.md-search-result__item')
    shot(d, 'search_check_shape')
    assert hits, 'offline search returned nothing for check_shape'
    assert any('check_shape' in h.text for h in hits), [h.text[:80] for h in hits]


def test_navigation_lists_every_notebook_in_notebook_order(server, browser):
    d = browser
    load(d, server + 'index.html')
    hrefs = d.execute_script('return [...document.querySelectorAll(".md-nav--primary a.md-nav__link[href]")]'
                             '.map(a => new URL(a.href).pathname.replace(/^\\//, ""))')
    nbs = sorted(notebooks(), key=lambda p: '00' if p.name.startswith('index.') else p.name)
    expected = [page_of(p) for p in nbs]
    seen = [h for h in dict.fromkeys(hrefs) if h in expected]
    assert seen == expected, f'sidebar order {seen} != notebook order {expected}'
    assert 'api.html' in hrefs, 'no API reference in the navigation'
    nxt = d.find_element(By.CSS_SELECTOR, 'a.md-footer__link--next').get_attribute('href')
    assert nxt.endswith(expected[1]), f'"next" from the home page goes to {nxt}, not {expected[1]}'


# ------------------------------------------------------------------------------------------------ the course pages
def _code_blocks(d):
    return d.execute_script('return [...document.querySelectorAll(".md-content pre")].map(p => p.textContent)')


_INTRO_JS = '''const h1 = document.querySelector(".md-content h1"); let e = h1.nextElementSibling, t = "";
    while (e && e.tagName !== "H2") { t += e.innerText + "\\n"; e = e.nextElementSibling; } return t;'''
_TABLE_JS = '''const h = document.getElementById("learning-path"); let e = h.nextElementSibling;
    while (e && e.tagName !== "H2" && e.tagName !== "TABLE" && !e.querySelector("table")) e = e.nextElementSibling;
    const t = e && (e.tagName === "TABLE" ? e : e.querySelector("table")); if (!t) return null;
    return {head: [...t.querySelectorAll("th")].map(x => x.innerText.toLowerCase()),
            rows: t.querySelectorAll("tbody tr").length,
            links: [...t.querySelectorAll("a[href]")].map(a => new URL(a.href).pathname.replace(/^\\//, ""))};'''


def test_home_page_shows_intro_install_and_learning_path(server, browser):
    d = browser
    load(d, server + 'index.html')
    shot(d, 'home')
    ids = d.execute_script('return [...document.querySelectorAll(".md-content h2")].map(h => h.id)')
    for need in ('what-you-will-learn', 'install', 'work-through-the-course', 'learning-path', 'get-the-data'):
        assert need in ids, f'home page has no "{need}" section (h2 ids: {ids})'
    intro = d.execute_script(_INTRO_JS)
    assert len(intro) > 200 and 'notebook' in intro.lower(), f'home page intro missing or short: {intro!r}'
    code = '\n'.join(_code_blocks(d))
    assert 'pip install' in code, 'no install command on the home page'
    assert '.[course]' in code and 'jupyter lab' in code, 'home page does not say how to open the course in JupyterLab'
    assert 'MEDSEG_TUTOR_DATA' in d.find_element(By.CSS_SELECTOR, '.md-content').text, 'home page does not say where the data goes'
    table = d.execute_script(_TABLE_JS)
    assert table and table['rows'] >= 10, f'no learning-path table under "Learning path" on the home page: {table}'
    for col in ('prerequisites', 'minutes', 'runs on', 'data'):
        assert any(col in h for h in table['head']), f'learning-path table has no "{col}" column: {table["head"]}'
    missing = sorted(page_of(p) for p in notebooks() if not p.name.startswith('index.') and page_of(p) not in table['links'])
    assert not missing, f'notebooks missing from the learning-path table on the home page (nbs/index.ipynb): {missing}'
    d.execute_script('document.getElementById("learning-path").scrollIntoView()')
    shot(d, 'home_learning_path')


def test_scan_page_shows_the_code_of_the_reference_loop_and_the_chunked_scan(server, browser):
    "The derivation is on the page (`#| exports`), not only a signature: the oracle loop and the chunked scan."
    d = browser
    if not SCAN_NB.exists(): pytest.skip(f'{SCAN_NB.name} is not written yet')
    load(d, server + SCAN_PAGE)
    import re
    # the source, not the signature box: a body with a `return` statement (the signature has `return_last_state`)
    body = lambda fn: [b for b in _code_blocks(d) if f'def {fn}(' in b and re.search(r'^\s+return\b', b, flags=re.M)]
    for fn in ('selective_scan_ref', 'chunked_linear_scan'):
        assert body(fn), (f'{SCAN_PAGE} shows no source of {fn} (only its signature?): mark its cell `#| exports` in '
                          f'{SCAN_NB.name} so that the site shows the code being derived')
    assert any(re.search(r'^\s+for\b', b, flags=re.M) for b in body('selective_scan_ref')), \
        'the reference scan on the page has no loop over time'


_FACTS_JS = '''const c = document.querySelector(".md-content");
    return {width: document.documentElement.scrollWidth, text: c ? c.innerText : "",
            headings: [...document.querySelectorAll(".md-content h2, .md-content h3")].map(h => h.innerText),
            src: [...document.querySelectorAll(".md-content .nb-source-links a[href], .md-content a[href]")]
                 .map(a => a.href).filter(h => h.includes("/blob/"))};'''


@pytest.fixture(scope='module')
def phone_facts(server, browser):
    """Every page once at phone width (420 px, emulated): page width, text, headings and source links. Collected once
    and checked by the tests below, so that each check passes or fails on its own."""
    d, facts = browser, {}
    d.execute_cdp_cmd('Emulation.setDeviceMetricsOverride',
                      {'width': PHONE_WIDTH, 'height': 900, 'deviceScaleFactor': 1, 'mobile': False})
    try:
        for page in pages():
            load(d, server + page)
            facts[page] = d.execute_script(_FACTS_JS)
            if facts[page]['width'] > PHONE_WIDTH: shot(d, f'phone__{page.replace("/", "_")[:-5]}')
    finally:
        d.execute_cdp_cmd('Emulation.clearDeviceMetricsOverride', {})
    return facts


def test_no_page_is_wider_than_a_phone(phone_facts):
    wide = {p: f['width'] for p, f in phone_facts.items() if f['width'] > PHONE_WIDTH}
    assert not wide, f'pages wider than a {PHONE_WIDTH} px viewport (page width in px; screenshots phone__*.png): {wide}'


def test_no_page_mentions_a_dossier(phone_facts):
    "Claims cite the papers and the released code, never internal notes."
    bad = sorted(p for p, f in phone_facts.items() if 'dossier' in f['text'].lower())
    assert not bad, f'pages that still say "dossier": {bad}'


def test_every_method_page_has_exercises(phone_facts):
    missing = []
    for nb in METHOD_NBS:
        path = ROOT/'nbs'/f'{nb}.ipynb'
        if not path.exists(): continue
        page = page_of(path)
        if page not in phone_facts: missing.append(f'{page} (no page)')
        elif not any('exercise' in h.lower() for h in phone_facts[page]['headings']): missing.append(page)
    assert not missing, f'method pages without an "Exercises" heading: {missing}'


def test_every_page_links_its_source(phone_facts):
    "Each notebook page links its notebook in the repository and the module it exports to; the API page links modules."
    bad = []
    for nb in notebooks():
        page = page_of(nb)
        if nb.name.startswith('index.') or page not in phone_facts: continue
        links = phone_facts[page]['src']
        if not any(l.endswith(f'/nbs/{nb.name}') for l in links): bad.append(f'{page}: no link to nbs/{nb.name}')
        if '#| default_exp' in nb.read_text(encoding='utf-8') and not any('.py' in l for l in links):
            bad.append(f'{page}: no link to its module')
    if 'api.html' in phone_facts and not any('.py' in l for l in phone_facts['api.html']['src']):
        bad.append('api.html: no link to any module source')
    assert not bad, '\n'.join(bad)


# ------------------------------------------------------------------------------------------------ the builder itself
@pytest.fixture(scope='module')
def bd():
    "tools/build_docs.py as a module (it is a script, not part of the package)."
    import importlib.util
    spec = importlib.util.spec_from_file_location('build_docs', ROOT/'tools'/'build_docs.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    return m


def test_first_cell_keeps_its_body_after_the_title(bd):
    "nbdev's front-matter processor drops the whole first cell: the builder keeps everything below the subtitle."
    cells = [{'cell_type': 'markdown', 'metadata': {}, 'id': 'a', 'source': '# T\n\n> sub\n\nIntro text.\n\n## Install\n\npip'},
             {'cell_type': 'code', 'metadata': {}, 'source': 'x = 1', 'outputs': []}]
    out = bd.split_title_cell(cells)
    assert [c['cell_type'] for c in out] == ['markdown', 'markdown', 'code']
    assert out[0]['source'] == '# T\n\n> sub' and out[1]['source'].startswith('Intro text.') and '## Install' in out[1]['source']
    assert out[1]['id'] != out[0]['id']
    only_title = [{'cell_type': 'markdown', 'metadata': {}, 'source': '# T\n> sub'}]
    assert bd.split_title_cell(only_title) == only_title


def test_stdout_chunks_become_one_block(bd):
    outs = [{'output_type': 'stream', 'name': 'stdout', 'text': f'{i}\n'} for i in range(42)]
    outs.insert(5, {'output_type': 'stream', 'name': 'stderr', 'text': 'warn\n'})
    merged = bd.Page.merge_streams(outs)
    assert [o['name'] for o in merged] == ['stdout', 'stderr', 'stdout']
    assert merged[0]['text'] == '0\n1\n2\n3\n4\n' and merged[2]['text'].count('\n') == 37


def test_showdoc_docstrings_are_escaped_and_inherited_ones_dropped(bd):
    md = '```python\ndef f(\n    x\n):\n```\n\n*out[b, r*i+u] = w * t, see `a*b`*'
    out = bd.clean_showdoc(md)
    assert r'r\*i+u' in out and r'w \* t' in out and '`a*b`' in out and out.rstrip().endswith('*')
    fwd = '```python\ndef forward(\n    x\n):\n```\n\n*Define the computation performed at every call.*\n\nShould be overridden by all subclasses.'
    assert 'Define the computation' not in bd.clean_showdoc(fwd)


def test_page_names_and_links_follow_nbdev(bd):
    assert bd._page_name('01_selective_scan') == 'selective_scan' and bd._page_name('00a_notation') == 'notation'
    links = bd.Links('blocks.lgl.md', bd.Repo('https://example.org/r', 'main'))
    md = links('[scan](01_selective_scan.ipynb#x) [source](/blob/main/medseg_tutor/ssm/scan.py#L12) [c](/core.html#check_shape)')
    assert '(selective_scan.md#x)' in md and '(core.md#check_shape)' in md
    assert '(https://example.org/r/blob/main/medseg_tutor/ssm/scan.py#L12)' in md


def test_exports_cells_show_their_source_and_export_cells_do_not(bd, tmp_path):
    "A processed notebook as nbdev leaves it: `#| exports` source is on the page, under its show_doc."
    nb = {'nbformat': 4, 'nbformat_minor': 5, 'metadata': {}, 'cells': [
        {'cell_type': 'raw', 'metadata': {}, 'source': '---\ntitle: T\ndescription: d\n---'},
        {'cell_type': 'code', 'metadata': {}, 'outputs': [], 'execution_count': None,
         'source': '#| code-fold: show\n#| code-summary: "Exported source"\ndef twice(x):\n    "2x"\n    return x + x'},
        {'cell_type': 'code', 'metadata': {}, 'execution_count': None, 'source': 'for i in range(3): print(i)',
         'outputs': [{'output_type': 'stream', 'name': 'stdout', 'text': f'{i}\n'} for i in range(3)]}]}
    import json
    (tmp_path/'01_x.ipynb').write_text(json.dumps(nb))
    page = bd.Page(tmp_path/'01_x.ipynb', Path('01_x.ipynb'), tmp_path/'md', bd.Repo('https://example.org/r'))
    md = page.markdown()
    assert 'Exported source' in md and 'return x + x' in md and 'code-fold' not in md
    assert md.count('nb-stream') == 1, md
