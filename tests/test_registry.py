"Model registry: names only (never import paths), plain-data keywords, `medseg_spec`, one-line input errors."
import copy, pickle, subprocess, sys
import numpy as np
import pytest
import torch
from medseg_tutor.core import MedsegError, ShapeError
from medseg_tutor.registry import create_model, list_models, register_model, check_kw

torch.set_num_threads(1)

def test_known_builders_are_listed():
    names = set(list_models())
    assert {'mobileutr', 'mobileutr_l', 'srsnet', 'srsnet_r', 'tiny_unet', 'hymamba_unetr', 'hymamba_classifier',
            'mambamim', 'mobileutr_classifier'} <= names

def test_registry_imports_no_nets_at_module_load():
    code = ("import sys, medseg_tutor.registry; "
            "bad = [m for m in sys.modules if m.startswith(('medseg_tutor.nets', 'medseg_tutor.mim'))]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_create_model_records_spec_and_builds():
    m = create_model('tiny_unet', in_channels=1, width=4)
    assert m.medseg_spec == {'name': 'tiny_unet', 'kw': {'in_channels': 1, 'width': 4}}
    assert m(torch.rand(2, 1, 16, 16)).shape == (2, 1, 16, 16)
    copy.deepcopy(m); pickle.loads(pickle.dumps(m))          # the input hook does not break copying/pickling

@pytest.mark.parametrize('name', ['os:system', 'subprocess.run', 'medseg_tutor.nets.mobileutr:mobileutr', '', 'nope'])
def test_unknown_or_import_path_names_are_refused(name):
    with pytest.raises(MedsegError, match='unknown model') as e: create_model(name)
    assert 'mobileutr' in str(e.value) and '\n' not in str(e.value)

def test_non_string_name_refused():
    with pytest.raises(MedsegError, match='named by a string'): create_model(len)

@pytest.mark.parametrize('bad', [torch.nn.ReLU, torch.tensor(3), np.int64(3), np.zeros(2), print, object(), {1: 2},
                                 [1, {2}], (1, b'x')])
def test_keyword_values_must_be_plain_data(bad):
    with pytest.raises(MedsegError) as e: create_model('tiny_unet', width=bad)
    assert '\n' not in str(e.value)

def test_plain_nested_keywords_pass():
    assert check_kw(dict(a=[1, 2.0, 'x', None, True], b={'c': (1, 2), 'd': {'e': []}}))
    m = create_model('hymamba_classifier', img_size=32, channels=[4, 8, 16, 32, 48], n_classes=2)
    assert m.medseg_spec['kw']['channels'] == [4, 8, 16, 32, 48]

def test_unknown_keyword_is_one_line():
    with pytest.raises(MedsegError, match='does not take these keywords') as e: create_model('tiny_unet', depth=3)
    assert '\n' not in str(e.value)

def test_duplicate_names():
    @register_model('test_registry_net')
    def test_registry_net(width:int=2): return torch.nn.Conv2d(1, width, 1)
    register_model('test_registry_net')(test_registry_net)          # the same function again (a re-run cell): fine
    def other(width:int=2): return torch.nn.Conv2d(1, width, 1)
    with pytest.raises(MedsegError, match='registered twice'): register_model('test_registry_net')(other)
    assert create_model('test_registry_net', width=3)(torch.rand(1, 1, 4, 4)).shape == (1, 3, 4, 4)

def test_builder_must_return_a_module():
    @register_model('test_registry_not_a_module')
    def f(): return 3
    with pytest.raises(MedsegError, match='not a torch.nn.Module'): create_model('test_registry_not_a_module')

def test_decorator_replaces_a_table_entry():
    "A builder named in the registry's own table is replaced, silently, by a decorated builder of the same name."
    from medseg_tutor import registry as R
    list_models()
    R._BUILDERS['test_table_entry'] = lambda: torch.nn.Identity(); R._FALLBACK.add('test_table_entry')
    try:
        @register_model('test_table_entry')
        def test_table_entry(width:int=2): return torch.nn.Conv2d(1, width, 1)
        assert 'test_table_entry' not in R._FALLBACK and R._BUILDERS['test_table_entry'] is test_table_entry
        assert isinstance(create_model('test_table_entry'), torch.nn.Conv2d)
    finally: R._BUILDERS.pop('test_table_entry', None); R._FALLBACK.discard('test_table_entry')

# -- input checks (issue 15: uint8 / fp64 input to a model gave a deep traceback) ----------------------------
@pytest.fixture(scope='module')
def unet(): return create_model('tiny_unet', in_channels=3, width=4)

@pytest.mark.parametrize('dtype,fix', [(torch.uint8, 'x.float() / 255'), (torch.int64, 'x.float()'),
                                       (torch.bool, 'x.float()'), (torch.float64, 'x.float()')])
def test_bad_dtype_is_one_line_with_fix(unet, dtype, fix):
    x = (torch.rand(1, 3, 16, 16) * 255).to(dtype)
    with pytest.raises(ShapeError) as e: unet(x)
    msg = str(e.value)
    assert fix in msg and str(dtype).replace('torch.', '') in msg and '(1, 3, 16, 16)' in msg and '\n' not in msg

@pytest.mark.parametrize('shape,match', [((3, 16, 16), 'x\\[None\\]'), ((1, 1, 16, 16), '3 input channel'),
                                         ((1, 3, 4, 16, 16), r'\(B, C, H, W\)')])
def test_bad_shape_is_one_line(unet, shape, match):
    with pytest.raises(ShapeError, match=match): unet(torch.rand(*shape))

def test_numpy_input_refused(unet):
    with pytest.raises(ShapeError, match='torch.Tensor'): unet(np.zeros((1, 3, 16, 16), np.float32))

def test_float64_model_takes_float64():
    m = create_model('tiny_unet', in_channels=1, width=2).double()
    assert m(torch.rand(1, 1, 8, 8, dtype=torch.float64)).dtype == torch.float64

def test_mobileutr_and_3d_models_check_inputs():
    mu = create_model('mobileutr')
    with pytest.raises(ShapeError, match='x.float\\(\\) / 255'): mu(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ShapeError, match='multiples of 16'): mu(torch.rand(1, 3, 30, 32))
    h = create_model('hymamba_unetr', img_size=32, channels=[4, 8, 16, 32, 48], num_classes=2)
    with pytest.raises(ShapeError): h(torch.rand(1, 1, 32, 32))
    with pytest.raises(ShapeError, match='float64'): h(torch.rand(1, 1, 32, 32, 32, dtype=torch.float64))

@pytest.mark.parametrize('name,kw,shape', [
    ('mobileutr', {}, (1, 3, 32, 32)), ('srsnet_r', {}, (1, 3, 16, 16)), ('srsnet', {}, (1, 3, 16, 16)),
    ('tiny_unet', {}, (1, 3, 16, 16)), ('mobileutr_classifier', {}, (2, 1, 28, 28)),
    ('hymamba_classifier', dict(img_size=32, channels=[4, 8, 16, 32, 48]), (1, 1, 32, 32, 32))])
def test_builders_run(name, kw, shape):
    m = create_model(name, **kw).eval()
    with torch.no_grad(): out = m(torch.rand(*shape))
    assert torch.isfinite(out).all()
