"Layout rules read from the source with `ast`: layers point one way, imports sit at the top, no dead fallbacks, one loop."
import ast
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parents[1]/'medseg_tutor'
MODULES = sorted(p for p in PKG.rglob('*.py') if p.name != '_modidx.py')

def module_name(p:Path) -> str:
    parts = p.relative_to(PKG.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)

def imports(p:Path, top_only:bool=False) -> list[tuple[str, int, bool]]:
    "(absolute module name, line, at module top level) for every import in `p`."
    tree, pkg = ast.parse(p.read_text()), module_name(p).rsplit('.', 0 if p.name == '__init__.py' else 1)[0]
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import): names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                up = pkg.split('.')[:len(pkg.split('.')) - node.level + 1]
                base = '.'.join(up + ([base] if base else []))
            names = [base] + [f'{base}.{a.name}' for a in node.names]
        else: continue
        for n in names: out.append((n, node.lineno, id(node) in top))
    return out

@pytest.mark.parametrize('p', [p for p in MODULES if p.parent.name in ('nets', 'blocks')], ids=lambda p: p.name)
def test_nets_and_blocks_import_no_training_or_pretraining(p):
    bad = [(n, l) for n, l, _ in imports(p) if n.startswith(('medseg_tutor.mim', 'medseg_tutor.train', 'medseg_tutor.demos'))]
    assert not bad, f"{p.relative_to(PKG.parent)} imports {bad}: architecture must not depend on mim/, train/ or demos/"

# Package imports still made inside functions in modules of other owners (2026-11-29); each is a known item for its
# owner (some break an import cycle that moving code would resolve). xfail with strict=True, not skip: every other
# module is held to the rule, and a fixed module fails (XPASS) until it is removed from the list.
LATE_IMPORTS_KNOWN = {'core.py': 'lead', 'data/folder.py': 'DATA', 'data/synthetic.py': 'DATA', 'nets/mobileutr.py': 'CRS',
                      'train/checkpoint.py': 'FLT (cycle with registry)', 'train/infer.py': 'FLT',
                      'train/reproduce.py': 'REP (cycle with cli)', 'registry.py': 'FLT (lazy builders by design)'}
FALLBACKS_KNOWN:dict[str, str] = {}

def _param(p, known):
    rel = str(p.relative_to(PKG))
    marks = [pytest.mark.xfail(reason=f'known, owner {known[rel]}', strict=True)] if rel in known else []
    return pytest.param(p, marks=marks, id=rel)

@pytest.mark.parametrize('p', [_param(p, LATE_IMPORTS_KNOWN) for p in MODULES])
def test_package_imports_are_at_the_top(p):
    "Every import of the package itself is a module-level statement (no imports hidden in functions)."
    late = [(n, l) for n, l, top in imports(p) if n.startswith('medseg_tutor') and not top]
    assert not late, f"{p.relative_to(PKG.parent)}: package imports inside functions {late}; move them to the top"

@pytest.mark.parametrize('p', [_param(p, FALLBACKS_KNOWN) for p in MODULES])
def test_no_import_error_fallbacks_between_package_modules(p):
    "A module never guards an import of another package module (optional third-party packages may be guarded)."
    for node in ast.walk(ast.parse(p.read_text())):
        if isinstance(node, ast.Try):
            own = [n for b in node.body for n in ast.walk(b) if isinstance(n, ast.ImportFrom) and
                   ((n.module or '').startswith('medseg_tutor') or n.level > 0)]
            catches = [ast.unparse(h.type) for h in node.handlers if h.type is not None]
            assert not (own and any('ImportError' in c or 'ModuleNotFoundError' in c for c in catches)), \
                f"{p.relative_to(PKG.parent)}:{node.lineno}: try/except ImportError fallback around a package import"

DEAD = ('_BCEDice', '_SimpleSegMetrics', '_disc_lesions', 'fit_phase', 'poly_lr')

@pytest.mark.parametrize('name', DEAD)
def test_dead_code_is_gone(name):
    hits = [str(p.relative_to(PKG.parent)) for p in MODULES if f'def {name}' in p.read_text() or f'class {name}' in p.read_text()]
    assert not hits, f"{name} is defined again in {hits}"

def test_one_training_loop():
    "Only the engine calls `optimizer.step()` / `.backward()`; everything else trains through `Trainer` (benchmarks aside)."
    allowed = {'medseg_tutor.train.engine'}
    offenders = []
    for p in MODULES:
        if module_name(p) in allowed: continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'backward':
                offenders.append(f"{p.relative_to(PKG.parent)}:{node.lineno}")
    assert not offenders, f"backward() outside the engine (a second training loop?): {offenders}"

def test_python_dash_m_entry_point_exists():
    src = (PKG/'__main__.py').read_text()
    assert 'from .cli import main' in src or 'from medseg_tutor.cli import main' in src
