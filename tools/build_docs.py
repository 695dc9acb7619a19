#!/usr/bin/env python
"""Build the documentation site from the notebooks in `nbs/`, offline, without Quarto.

    python tools/build_docs.py            # -> site/index.html (open it through any static web server)

Steps (see docs/README.md for why this pipeline and not Jupyter Book):
1. nbdev's own notebook processors (`nbdev.serve.proc_nbs`, the step `nbdev-docs` runs before Quarto) write
   processed notebooks to `build/docs_proc/`: `#| hide` cells dropped, `#| export` sources removed (signature and
   docstring stay, through `show_doc`), `#| exports` sources kept under their `show_doc`, `# Title` + `> subtitle`
   turned into front matter (the rest of that first cell is kept: see `split_title_cell`).
2. Each processed notebook becomes one Markdown page (saved outputs kept: text, tables, plots, show_doc output),
   in nbdev's sidebar order (index first, then by file name), with links to its notebook and module(s) in the
   repository (`--repo-url`) and to the notation page under its title.
3. An API reference page is generated from `medseg_tutor/_modidx.py` with nbdev's `show_doc` (signature,
   parameter comments, docstring) for every exported function, class and public method.
4. mkdocs + Material build the static site with offline search; MathJax 3 and its fonts are copied from the
   `django-static-mathjax` wheel into the site, so nothing is fetched from a CDN when a page is viewed.

`nbdev-docs` keeps working where Quarto is installed (nbs/_quarto.yml, nbs/nbdev.yml, nbs/styles.css).
"""
from __future__ import annotations

import argparse, json, os, posixpath, re, shutil, subprocess, sys, time, base64
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT/'docs'
_ANSI = re.compile(r'\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])')
_DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_IMG_EXTS = {'.png', '.jpg', '.jpeg', '.gif', '.svg', '.webp'}
# MathJax 3 pieces the pages need: the tex-chtml bundle, lazily loaded TeX extensions, the CHTML fonts, the menu.
_MJ_PARTS = ['tex-chtml.js', 'input', 'output/chtml', 'ui', 'a11y', 'adaptors']


def log(msg): print(f'[build_docs {time.strftime("%H:%M:%S")}] {msg}', flush=True)


# ---------------------------------------------------------------------------------------------------- notebooks
def _fence(text: str, lang: str = '', cls: str = '') -> str:
    "A fenced block long enough not to be closed by backticks inside `text`."
    runs = [len(m) for m in re.findall(r'`{3,}', text)]
    f = '`' * max(3, max(runs, default=0) + 1)
    attrs = f'{{ .{lang or "text"}{" ." + cls if cls else ""} }}' if cls else lang
    return f'{f}{attrs}\n{text.rstrip()}\n{f}'


def _directives(src: str):
    "Split leading `#| key: value` lines (Quarto/nbdev directives) off a code cell."
    lines, d = src.splitlines(), {}
    i = 0
    while i < len(lines) and (m := _DIRECTIVE.match(lines[i])):
        d[m.group(1).lower()] = m.group(2).strip().lower()
        i += 1
    return d, '\n'.join(lines[i:]).strip('\n')


class Repo:
    """Where the repository lives on the web, for the source links of every page: `{repo_url}/blob/{branch}/<path>`,
    with `<path>` relative to the repository root (`nbs/01_selective_scan.ipynb`, `medseg_tutor/ssm/scan.py`).
    Set by `--repo-url`, else $MEDSEG_DOCS_REPO_URL, else `git_url` in the nbdev settings, else `extra.repo_url`
    of docs/mkdocs.yml (a placeholder until the project has a public home)."""
    def __init__(self, url: str, branch: str = 'main'):
        self.url, self.branch = url.rstrip('/'), branch or 'main'

    def blob(self, path: str) -> str: return f'{self.url}/blob/{self.branch}/{path.lstrip("/")}'


class Links:
    "Rewrite nbdev's site-absolute links (`/core.html#x`) to relative ones; nbdev's `[source]` links point into `repo`."
    def __init__(self, page: str, repo: Repo):
        self.dir = posixpath.dirname(page)
        self.repo = repo

    def __call__(self, md: str) -> str:
        # nbdev writes `[source](/blob/main/medseg_tutor/x.py#L12)` from its own git_url (empty here): point it at the repository
        md = re.sub(r'\[source\]\(/blob/[^/)]+/([^)#]*)(#L\d+)?(#LNone)?\)(\{[^}]*\})?',
                    lambda m: f'[source]({self.repo.blob(m.group(1))}{m.group(2) or ""}){{ .nb-srclink }}', md)
        # links between notebooks written as in Jupyter, `[text](01_selective_scan.ipynb#x)`, go to that notebook's page
        md = re.sub(r'\]\((?:\./)?([\w.\-]+)\.ipynb(#[^)\s]*)?\)', lambda m: f']({_page_name(m.group(1))}.md{m.group(2) or ""})', md)
        def rel(m):
            target = m.group(2)
            path, _, frag = target.partition('#')
            r = posixpath.relpath(path.lstrip('/') or 'index.html', self.dir or '.')
            r = r[:-5] + '.md'  # mkdocs checks links between .md sources and writes them as .html
            return f'{m.group(1)}({r}{"#" + frag if frag else ""})'
        return re.sub(r'(\]|\bhref=)\((/(?!/)[^)\s]*\.html(?:#[^)\s]*)?)\)', rel, md)


PLACEHOLDER_REPO = 'https://github.com/medseg-tutor/medseg_tutor'  # until the project has a public home (docs/mkdocs.yml)
DISPLAY_MARK = r'\displaystyle{}{}{}'  # docs/hooks.py turns `\(<mark>...\)` into display maths `\[...\]`


def _display_math(seg: str) -> str:
    "`$$...$$` anywhere (own line, mid-sentence, inside a list item) -> inline maths marked for display."
    return re.sub(r'(?<![\\$])\$\$(.+?)(?<!\\)\$\$', lambda m: f'${DISPLAY_MARK} {m.group(1).strip()}$', seg, flags=re.S)


def _fix_markdown(md: str) -> str:
    """Bridge CommonMark habits (what Jupyter and Quarto accept) to Python-Markdown: a list right after a paragraph
    line needs a blank line before it, and `$$` display maths may sit anywhere, e.g. inside a list item."""
    out, in_code = [], False
    list_re = re.compile(r'^(?:[-*+]|\d+[.)])\s')
    for line in md.splitlines():
        s = line.strip()
        prev = out[-1] if out else ''
        if s.startswith(('```', '~~~')): in_code = not in_code; out.append(line); continue
        if in_code: out.append(line); continue
        if list_re.match(line) and prev.strip() and not list_re.match(prev.lstrip()) and not prev.startswith((' ', '\t', '>', '|', '#')):
            out.append('')
        out.append(line)
    # display maths outside fenced code
    parts = re.split(r'(^[ \t]*(?:```|~~~).*?^[ \t]*(?:```|~~~)[^\n]*$)', '\n'.join(out), flags=re.S | re.M)
    def outside_code_spans(seg): return ''.join(q if j % 2 else _display_math(q) for j, q in enumerate(re.split(r'(`+[^`\n]+?`+)', seg)))
    return ''.join(p if i % 2 else outside_code_spans(p) for i, p in enumerate(parts))


def _anchor_headings(md: str) -> str:
    "show_doc headings get nbdev's anchors (`Trainer.fit` -> #trainer.fit), which Python-Markdown would slug differently."
    return re.sub(r'^(#{2,6}) ([\w.]+)\s*$', lambda m: f'{m.group(1)} {m.group(2)} {{ #{m.group(2).lower()} }}', md, flags=re.M)


def _page_name(stem: str) -> str:
    "nbdev's page name for a notebook: its number (and a letter suffix, `00a_`) dropped, lower case."
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', stem.lower())


def _text(x) -> str: return ''.join(x) if isinstance(x, list) else (x or '')


def _escape_md(text: str) -> str:
    "Escape `*` and `_` outside code spans: docstrings are plain text, `out[b, r*i+u]` must not turn italic."
    parts = re.split(r'(`+[^`]*?`+)', text)
    return ''.join(q if j % 2 else re.sub(r'(?<!\\)([*_])', r'\\\1', q) for j, q in enumerate(parts))


_INHERITED = None


def _inherited_docs() -> set:
    "Docstrings of `torch.nn.Module` and its methods: an undocumented `forward` (or class) inherits them in `show_doc`."
    global _INHERITED
    if _INHERITED is None:
        import inspect
        _INHERITED = set()
        try:
            import torch.nn as nn
            for obj in [nn.Module] + [getattr(nn.Module, n, None) for n in dir(nn.Module)]:
                if callable(obj) and (d := inspect.getdoc(obj)): _INHERITED.add(d.strip().splitlines()[0].strip())
        except ImportError: pass
    return _INHERITED


def clean_showdoc(md: str) -> str:
    """A `show_doc` block (signature fence, then the docstring): drop a docstring inherited from `nn.Module`
    (`Define the computation performed at every call.` under every `forward`), escape the docstring's `*` and `_`."""
    m = re.search(r'^```python\n.*?^```[ \t]*$', md, flags=re.S | re.M)
    if not m: return md
    head, doc = md[:m.end()], md[m.end():]
    first = doc.strip().splitlines()[0].strip('* ') if doc.strip() else ''
    if first and first in _inherited_docs(): return head + '\n'
    lines, out = doc.split('\n'), []
    in_code = False
    for ln in lines:
        if ln.lstrip().startswith(('```', '~~~')): in_code = not in_code; out.append(ln); continue
        if in_code or ln.startswith(('    ', '|')) or not ln.strip(): out.append(ln); continue
        mm = re.match(r'^(\s*)\*(.+)\*\s*$', ln) if not out or not ''.join(out).strip() else None
        out.append(f'{mm.group(1)}*{_escape_md(mm.group(2))}*' if mm else _escape_md(ln))
    return head + '\n'.join(out)


def _exported_modules(nb: dict, lib_path: str) -> list[str]:
    "Files `nbs/x.ipynb` exports into, in order: `#| default_exp m` and `#| export[s|i] [m]` cells."
    default, mods = None, []
    for c in nb.get('cells', []):
        if c.get('cell_type') != 'code': continue
        d, _ = _directives(_text(c.get('source')))
        src = _text(c.get('source'))
        if (m := re.search(r'^\s*#\|\s*default_exp\s+(\S+)', src, flags=re.M)): default = m.group(1)
        for k in ('export', 'exports', 'exporti'):
            if k in d:
                mod = (d[k].split() or [default])[0] if d[k] else default
                if mod and mod not in mods: mods.append(mod)
    return [f'{lib_path}/{m.replace(".", "/")}.py' for m in mods]


class Page:
    "One processed notebook -> one Markdown page plus its image files."
    def __init__(self, src: Path, rel: Path, out_dir: Path, repo: Repo, orig: Path | None = None,
                 lib_path: str = 'medseg_tutor', notation: str | None = None):
        self.src, self.nb = src, json.loads(src.read_text(encoding='utf-8'))
        self.fm = {}
        for c in self.nb['cells']:
            if c['cell_type'] == 'raw' and _text(c['source']).lstrip().startswith('---'):
                import yaml
                self.fm = yaml.safe_load(_text(c['source']).strip().strip('-')) or {}
                break
        of = self.fm.get('output-file') or _page_name(rel.stem) + '.html'
        self.page = (rel.parent/Path(of).with_suffix('.md')).as_posix()
        self.html = self.page[:-3] + '.html'
        self.title = str(self.fm.get('title') or rel.stem)
        self.out_dir, self.links, self.repo = out_dir, Links(self.page, repo), repo
        self.orig = orig  # the notebook in the repository, relative to its root (nbs/01_selective_scan.ipynb)
        self.modules = _exported_modules(json.loads((ROOT/orig).read_text(encoding='utf-8')), lib_path) if orig else []
        self.notation = notation  # the notation page (.md), linked from the header of every other page
        self.files_dir = Path(self.page).with_suffix('').as_posix() + '_files'
        self.n_img, self.n_math = 0, 0

    def _save(self, name: str, data: bytes) -> str:
        p = self.out_dir/self.files_dir/name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        self.n_img += 1
        return posixpath.relpath(f'{self.files_dir}/{name}', posixpath.dirname(self.page) or '.')

    def header(self) -> str:
        "Source links (the notebook, the module(s) it exports to) and the notation page, under the title."
        if self.page == 'index.md' or not self.orig: return ''
        links = [f'[notebook `{self.orig.name}`]({self.repo.blob(self.orig.as_posix())}){{ .nb-src-nb }}']
        links += [f'[module `{m}`]({self.repo.blob(m)}){{ .nb-src-mod }}' for m in self.modules]
        if self.notation and self.notation != self.page:
            links.append(f'[notation]({posixpath.relpath(self.notation, posixpath.dirname(self.page) or ".")})'
                         '{ .nb-notation-link }')
        return '<div class="nb-source-links" markdown>\n' + 'Source: ' + ' · '.join(links) + '\n</div>'

    def _output(self, o, ci: int, oi: int, asis: bool) -> str:
        t = o.get('output_type')
        if t == 'stream':
            txt = _ANSI.sub('', _text(o.get('text')))
            return _fence(txt, 'text', 'nb-stderr' if o.get('name') == 'stderr' else 'nb-stream') if txt.strip() else ''
        if t == 'error':
            tb = _ANSI.sub('', '\n'.join(o.get('traceback') or [f"{o.get('ename')}: {o.get('evalue')}"]))
            return _fence(tb, 'text', 'nb-error')
        d = o.get('data', {})
        if 'text/markdown' in d:
            md = _text(d['text/markdown'])
            if asis: md = clean_showdoc(md)
            md = self.links(_anchor_headings(md))
            return md if asis else f'<div class="nb-output" markdown>\n\n{md}\n\n</div>'
        for mime, ext in (('image/svg+xml', 'svg'), ('image/png', 'png'), ('image/jpeg', 'jpg'), ('image/gif', 'gif')):
            if mime in d:
                raw = _text(d[mime])
                data = raw.encode() if ext == 'svg' else base64.b64decode(raw)
                path = self._save(f'cell{ci}_out{oi}.{ext}', data)
                return f'<figure class="nb-figure" markdown>\n![plot: output of cell {ci}]({path}){{ loading=lazy }}\n</figure>'
        if 'text/html' in d:
            html = _text(d['text/html'])
            if re.search(r'<script\b', html, re.I) and 'text/plain' in d:  # widgets etc. would need JS we don't ship
                return _fence(_ANSI.sub('', _text(d['text/plain'])), 'text', 'nb-result')
            return f'<div class="nb-output nb-html" markdown="0">\n{html.strip()}\n</div>'
        if 'text/latex' in d:
            self.n_math += 1
            return '\n' + _text(d['text/latex']).strip() + '\n'
        if 'text/plain' in d:
            return _fence(_ANSI.sub('', _text(d['text/plain'])), 'text', 'nb-result')
        return ''

    @staticmethod
    def merge_streams(outputs: list) -> list:
        "Consecutive stdout (or stderr) chunks of one cell become one output, as Jupyter shows them: one box, not 42."
        out = []
        for o in outputs:
            if (o.get('output_type') == 'stream' and out and out[-1].get('output_type') == 'stream'
                    and out[-1].get('name') == o.get('name')):
                out[-1] = {**out[-1], 'text': _text(out[-1].get('text')) + _text(o.get('text'))}
            else: out.append(o)
        return out

    def markdown(self) -> str:
        parts = [f'# {self.title}']
        if self.fm.get('description'):
            parts.append(f'{_fix_markdown(str(self.fm["description"]).strip())}\n{{: .nb-subtitle }}')
        if (h := self.header()): parts.append(h)
        for ci, c in enumerate(self.nb['cells']):
            src = _text(c.get('source'))
            if c['cell_type'] == 'markdown':
                if src.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
                for name, att in (c.get('attachments') or {}).items():
                    for mime, data in att.items():
                        if mime.startswith('image/'):
                            p = self._save(f'cell{ci}_{name}', base64.b64decode(_text(data)) if 'svg' not in mime else _text(data).encode())
                            src = src.replace(f'attachment:{name}', p)
                self.n_math += len(re.findall(r'\$', src)) // 2
                parts.append(self.links(_fix_markdown(src)))
            elif c['cell_type'] == 'code':
                d, code = _directives(src)
                if d.get('include') == 'false': continue
                if code.strip() and d.get('echo') != 'false':
                    if 'code-fold' in d:  # an `#| exports` cell: nbdev shows its source under the show_doc, foldable
                        mods = ', '.join(f'`{m}`' for m in self.modules[:1])
                        parts.append(f'<details class="nb-exported" open markdown>\n<summary>Exported source'
                                     f'{" (in " + mods + ")" if mods else ""}</summary>\n\n{_fence(code, "python")}\n\n</details>')
                    else: parts.append(_fence(code, 'python'))
                if d.get('output') == 'false': continue
                asis = d.get('output') == 'asis'
                for oi, o in enumerate(self.merge_streams(c.get('outputs', []))):
                    if (md := self._output(o, ci, oi, asis)): parts.append(md)
            # raw cells (front matter, format-specific output) are not shown
        return '\n\n'.join(parts) + '\n'


def _nb_order(nbs: Path, proc: Path):
    "Processed notebooks in nbdev's sidebar order: index first, then by folder and file name."
    from nbdev.doclinks import nbglob
    files = [Path(f) for f in nbglob(nbs, file_re=r'\.ipynb$')]
    key = lambda f: (f.relative_to(nbs).parent.as_posix(), '00' if f.name.startswith('index.') else f.name)
    return [(proc/f.relative_to(nbs), f.relative_to(nbs)) for f in sorted(files, key=key)]


def _needed_for_docs(cell) -> bool:
    """Which cells run while building docs. nbdev runs export cells, show_doc cells and every cell that contains an
    import; we run the same except cells that mix imports with other code (nbdev warns about those: they can
    train a model for minutes or need state from cells that are not run). Those keep their saved outputs."""
    import ast
    from nbdev.processors import _do_eval, _show_docs
    if not _do_eval(cell): return False
    if re.search(r'''^if\s+__name__\s*==\s*['"]__main__['"]''', cell.source, flags=re.M): return False  # a script guard would run the CLI
    if cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'}: return True
    trees = cell.parsed_()
    return all(isinstance(t, (ast.Import, ast.ImportFrom)) for t in trees) or bool(_show_docs(trees))


def split_title_cell(cells: list) -> list:
    """nbdev's front-matter processor turns a first markdown cell `# Title` / `> subtitle` into the page's title and
    description and drops the *whole* cell: any intro, install section or table written below the subtitle in
    that same cell would vanish from the site. Keep the title lines (and `- key: value` front-matter lines) in that
    cell and move the rest into a new markdown cell right after it."""
    for i, c in enumerate(cells):
        if c.get('cell_type') != 'markdown': continue
        lines = _text(c.get('source')).splitlines()
        if not lines or not lines[0].startswith('# '): return cells
        j = 1
        while j < len(lines) and (not lines[j].strip() or lines[j].startswith('>') or re.match(r'^- [\w-]+:', lines[j])): j += 1
        rest = '\n'.join(lines[j:]).strip('\n')
        if not rest: return cells
        head = {**c, 'source': '\n'.join(lines[:j]).rstrip()}
        body = {'cell_type': 'markdown', 'metadata': {}, 'source': rest}
        if 'id' in c: body['id'] = f"{c['id']}-body"
        if 'attachments' in c: body['attachments'] = c['attachments']
        return cells[:i] + [head, body] + cells[i + 1:]
    return cells


def process_notebooks(nbs: Path, proc: Path) -> dict:
    """nbdev's documentation processors (what `nbdev-docs` runs before Quarto) over every notebook, in this process,
    with cwd nbs/ like nbdev-test. Two differences from `nbdev.serve.proc_nbs`: see `_needed_for_docs` for the
    cells that are executed; and a cell that fails when executed doesn't stop the build: it is reported in the
    log (and fails --strict) and keeps the outputs saved in the notebook. Returns {notebook: [error, ...]}."""
    from fastcore.nbio import dict2nb, write_nb
    from nbdev.processors import FilterDefaults, exec_show_docs
    from nbdev.config import get_config
    errors, current = {}, []

    class tolerant_exec_show_docs(exec_show_docs):
        def __call__(self, cell):
            if not _needed_for_docs(cell): return  # keeps its saved outputs
            saved = cell.get('outputs')
            try: super().__call__(cell)
            except Exception as e:  # keep the outputs saved in the notebook rather than this run's traceback
                current.append(str(e).strip())
                if saved is not None: cell['outputs'] = saved

    class Filter(FilterDefaults):
        def base_procs(self): return [tolerant_exec_show_docs if p is exec_show_docs else p for p in super().base_procs()]

    if proc.exists(): shutil.rmtree(proc)
    cwd, os.environ['IN_TEST'] = os.getcwd(), '1'
    os.chdir(nbs)
    try:
        lib = get_config().lib_name
        for src, rel in _nb_order(nbs, nbs):
            t = time.time(); current.clear()
            os.chdir(nbs)  # like nbdev-test; and a notebook that changed the directory must not move the next one
            # each notebook starts from a fresh import of the package, as under nbdev-test (one process per
            # notebook): module-level state such as the model registry must not leak from one notebook to the next
            for m in [m for m in sys.modules if m == lib or m.startswith(lib + '.')]: del sys.modules[m]
            try:
                js = json.loads(src.read_text(encoding='utf-8'))
                js['cells'] = split_title_cell(js['cells'])
                nb = dict2nb(js); nb['path_'] = str(src)
            except Exception as e:  # e.g. a notebook being written right now
                errors[rel.as_posix()] = [f'unreadable notebook, no page: {type(e).__name__}: {e}']; log(f'  {rel} SKIPPED: {e}'); continue
            import warnings
            with warnings.catch_warnings(record=True) as w:  # nbdev's "imports and other code" warning, once a cell
                warnings.simplefilter('always')
                Filter()(nb)
            mixed = sum('imports and other code' in str(x.message) for x in w)
            if current: errors[rel.as_posix()] = list(current)
            try: here = os.getcwd()
            except FileNotFoundError: here = '<a deleted folder>'
            if here != str(Path(nbs).resolve()): log(f'  note: {rel} changed the working directory (to {here})')
            dst = proc/rel; dst.parent.mkdir(parents=True, exist_ok=True)
            write_nb(nb, dst)
            try:
                import matplotlib.pyplot as plt; plt.close('all')
            except Exception: pass
            log(f'  {rel} processed in {time.time()-t:.1f}s' + (f'  ({len(current)} cell(s) FAILED)' if current else '')
                + (f'  [{mixed} cell(s) mix imports with code: not re-run, saved outputs shown]' if mixed else ''))
    finally:
        os.chdir(cwd); os.environ.pop('IN_TEST', None)
    for f in nbs.rglob('*'):  # images referenced from markdown cells (e.g. nbs/images/x.png)
        if f.suffix.lower() in _IMG_EXTS and not any(s.startswith(('.', '_')) for s in f.relative_to(nbs).parts):
            d = proc/f.relative_to(nbs); d.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, d)
    return errors


# ---------------------------------------------------------------------------------------------------- API page
def api_markdown(links: Links, cfg) -> tuple[str, list[str]]:
    "One section per exported module: nbdev's show_doc for each exported function, class and public method."
    import importlib, inspect
    from nbdev.showdoc import show_doc
    lib = cfg.lib_name
    modidx = importlib.import_module(f'{lib}._modidx').d['syms']
    parts = ['# API reference',
             'Every function and class the notebooks export, module by module, with its signature, the meaning of '
             'each argument and its docstring. The name of a module links to the notebook that derives it.\n'
             '{: .nb-subtitle }']
    problems, anchors = [], set()
    for mod in sorted(modidx):
        syms = modidx[mod]
        if not syms: continue
        page = next(iter(syms.values()))[0].split('#')[0]
        mod_file = f'{mod.replace(".", "/")}.py'
        parts.append(f'## `{mod}` {{ #{mod.replace(".", "-")} }}\n\n[Notebook: {page[:-5]}](/{page}) · '
                     f'[source: `{mod_file}`]({links.repo.blob(mod_file)})')
        try: m = importlib.import_module(mod)
        except Exception as e:  # a notebook being rewritten can break its module; say so on the page, keep building
            problems.append(f'{mod}: {type(e).__name__}: {e}')
            parts.append(f'!!! warning "Could not import `{mod}`"\n    `{type(e).__name__}: {e}`'); continue
        for full, (doc, _) in sorted(syms.items(), key=lambda kv: kv[0].lower()):  # methods follow their class
            qual = full[len(mod) + 1:]
            if any(p.startswith('_') for p in qual.split('.')): continue
            obj = m
            try:
                for p in qual.split('.'): obj = getattr(obj, p)
                md = show_doc(obj, title_level=3 + qual.count('.'))._repr_markdown_()
            except Exception as e:
                problems.append(f'{full}: {type(e).__name__}: {e}'); continue
            if '.' in qual: doc = doc.split('#')[0] + '#' + qual.split('.')[0].lower()  # notebooks document the class
            md = clean_showdoc(md)
            if inspect.isclass(obj):  # show_doc prints a class's constructor signature as `def Name(`
                md = md.replace(f'```python\ndef {qual.split(".")[-1]}(', f'```python\nclass {qual.split(".")[-1]}(', 1)
            md = re.sub(r'(\[source\]\([^)]*\)(\{[^}]*\})?)', lambda m: f'[in the notebook](/{doc}){{ .nb-srclink }} {m.group(1)}', md, count=1)
            # one anchor per symbol on this page: a name exported by two modules (`dihedral`, `ResBlock.forward`)
            # gets its module in the anchor the second time
            anchor = qual.lower() if qual.lower() not in anchors else f'{mod}.{qual}'.lower().replace('.', '-')
            anchors.add(anchor)
            md = re.sub(r'^(#{2,6}) ([\w.]+)\s*$', lambda m: f'{m.group(1)} {m.group(2)} {{ #{anchor} }}', md, count=1, flags=re.M)
            parts.append(md)
    return links('\n\n'.join(parts)) + '\n', problems


def fix_method_links(work: Path):
    """nbdev links a method (`Trainer.fit`) to `page#trainer.fit`, but a notebook page documents only the class
    unless it calls `show_doc(Trainer.fit)`: point such links at the class's anchor, which exists."""
    mds = {p.relative_to(work).as_posix(): p for p in work.rglob('*.md')}
    anchors = {k: set(re.findall(r'\{ #([^\s}]+) \}', p.read_text(encoding='utf-8'))) for k, p in mds.items()}
    for k, p in mds.items():
        md, base = p.read_text(encoding='utf-8'), posixpath.dirname(k)
        def fix(m):
            target = posixpath.normpath(posixpath.join(base, m.group(1))) if m.group(1) else k
            have = anchors.get(target)
            frag = m.group(2)
            if have is None or frag in have or '.' not in frag: return m.group(0)
            cls = frag.rsplit('.', 1)[0]
            return f'({m.group(1)}#{cls})' if cls in have else m.group(0)
        new = re.sub(r'\(([\w./-]*\.md)?#([\w.\-]+)\)', fix, md)
        if new != md: p.write_text(new, encoding='utf-8')


# ---------------------------------------------------------------------------------------------------- build
def _copy_mathjax(dst: Path):
    import importlib.util
    spec = importlib.util.find_spec('mathjax')
    src = Path(spec.origin).parent/'static'/'mathjax'/'es5' if spec and spec.origin else None
    if not src or not (src/'tex-chtml.js').exists():
        sys.exit('MathJax not found: pip install django-static-mathjax (see docs/README.md, the docs extra)')
    for part in _MJ_PARTS:
        s, d = src/part, dst/part
        if s.is_dir(): shutil.copytree(s, d, dirs_exist_ok=True)
        elif s.exists(): d.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(s, d)
    shutil.copy2(src.parent/'LICENSE', dst/'LICENSE')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--site', default=str(ROOT/'site'), help='output folder of the static site (default: site/)')
    ap.add_argument('--work', default=str(ROOT/'build'/'docs_md'), help='generated Markdown sources (default: build/docs_md)')
    ap.add_argument('--repo-url', default=None, help='web address of the repository, for the source links of every page '
                    f'(default: $MEDSEG_DOCS_REPO_URL, else git_url in the nbdev settings, else extra.repo_url in docs/mkdocs.yml)')
    ap.add_argument('--strict', action='store_true', help='fail on mkdocs warnings, API import problems and cells that fail under doc processing')
    a = ap.parse_args(argv)
    t0 = time.time()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))  # document this checkout's package, even if another copy is installed
    os.environ.setdefault('OMP_NUM_THREADS', '1'); os.environ.setdefault('MPLBACKEND', 'Agg')
    from nbdev.config import get_config
    import yaml
    cfg = get_config()
    extra = yaml.safe_load((DOCS/'mkdocs.yml').read_text()).get('extra') or {}
    repo = Repo(a.repo_url or os.environ.get('MEDSEG_DOCS_REPO_URL') or str(cfg.get('git_url', '') or '')
                or str(extra.get('repo_url') or PLACEHOLDER_REPO), str(cfg.get('branch', '') or extra.get('repo_branch') or 'main'))
    log(f'source links point to {repo.blob("")}  (--repo-url, $MEDSEG_DOCS_REPO_URL or extra.repo_url in docs/mkdocs.yml)')

    log(f'1/4 nbdev processes the notebooks in {cfg.nbs_path.relative_to(ROOT)}/ (hide, show_doc, exports) -> build/docs_proc/')
    proc = ROOT/'build'/'docs_proc'
    errors = process_notebooks(cfg.nbs_path, proc)
    t1 = time.time()

    work, site = Path(a.work), Path(a.site)
    if work.exists(): shutil.rmtree(work)
    work.mkdir(parents=True)
    log(f'2/4 notebooks -> Markdown in {work}')
    sections = {str(k): v for k, v in (extra.get('nb_sections') or {}).items()}
    nav, pages = [], []
    order = _nb_order(cfg.nbs_path, proc)
    notation = next((_page_name(rel.stem) + '.md' for _, rel in order if _page_name(rel.stem) == 'notation'), None)
    lib_path = Path(cfg.lib_path).relative_to(ROOT).as_posix()
    for src, rel in order:
        if not src.exists(): log(f'  skipped {rel}: not processed'); continue
        orig = (cfg.nbs_path/rel).relative_to(ROOT)
        p = Page(src, rel, work, repo, orig=orig, lib_path=lib_path, notation=notation)
        (work/p.page).parent.mkdir(parents=True, exist_ok=True)
        (work/p.page).write_text(p.markdown(), encoding='utf-8')
        entry = {('Home' if p.page == 'index.md' else p.title): p.page}
        sec = sections.get(m.group(1)) if (m := re.match(r'(\d)\d[a-z]?_', rel.name)) and len(rel.parts) == 1 else None
        if sec and nav and isinstance(nav[-1].get(sec), list): nav[-1][sec].append(entry)
        elif sec: nav.append({sec: [entry]})
        else: nav.append(entry)
        pages.append(p)
        log(f'  {rel} -> {p.page} ({p.n_img} images)')
    for f in proc.rglob('*'):
        if f.suffix.lower() in _IMG_EXTS: d = work/f.relative_to(proc); d.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, d)

    log('3/4 API reference from _modidx.py with show_doc')
    api, problems = api_markdown(Links('api.md', repo), cfg)
    (work/'api.md').write_text(api, encoding='utf-8')
    fix_method_links(work)
    nav.append({'API reference': 'api.md'})
    for pr in problems: log(f'  API WARNING {pr}')
    t2 = time.time()

    log('4/4 mkdocs (Material theme, offline search, local MathJax)')
    shutil.copytree(DOCS/'assets', work/'assets', dirs_exist_ok=True)
    _copy_mathjax(work/'assets'/'mathjax')
    conf = {'INHERIT': str(DOCS/'mkdocs.yml'), 'hooks': [str(DOCS/'hooks.py')], 'site_name': str(cfg.get('title') or cfg.lib_name),
            'site_description': str(cfg.get('description') or ''), 'docs_dir': str(work), 'site_dir': str(site),
            'nav': nav}
    conf_path = work.parent/'mkdocs.gen.yml'
    conf_path.write_text(yaml.safe_dump(conf, sort_keys=False), encoding='utf-8')
    cmd = [sys.executable, '-m', 'mkdocs', 'build', '--clean', '-f', str(conf_path)] + (['--strict'] if a.strict else [])
    r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
    t3 = time.time()
    if r.returncode: sys.exit(f'mkdocs build failed ({r.returncode})')
    log(f'done: {len(pages)} notebook pages + API reference -> {site}/index.html  '
        f'(nbdev processing {t1-t0:.1f}s, markdown+API {t2-t1:.1f}s, mkdocs {t3-t2:.1f}s, total {t3-t0:.1f}s)')
    log(f'view it with: python -m http.server -d {os.path.relpath(site)} 8000   (then open http://localhost:8000)')
    for nb, errs in errors.items(): log(f'WARNING {nb}: {len(errs)} cell(s) failed under nbdev doc processing: ' + errs[0].splitlines()[-1])
    if a.strict and (problems or errors): sys.exit(f'--strict: {len(problems)} API problems, {len(errors)} notebooks with failing cells')


if __name__ == '__main__':
    main()
