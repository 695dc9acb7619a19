"The released input scaling (ImageNet standardisation, then / 255 again) as a flag, and the default, through the CLI."
import json
import pytest, torch
from conftest import run_cli
from medseg_tutor.data.tensors import TensorSegData
from medseg_tutor.data.transforms import apply_normalize, IMAGENET_MEAN, IMAGENET_STD
from medseg_tutor.train.checkpoint import load_checkpoint

def test_tensor_data_scaling_both_ways():
    ims = torch.tensor([[[[0, 255]]]], dtype=torch.uint8).expand(1, 3, 1, 2).contiguous()
    ms = torch.zeros(1, 1, 1, 2, dtype=torch.uint8)
    x_def = TensorSegData(ims, ms).batch(torch.arange(1))[0]
    x_rel = TensorSegData(ims, ms, normalize='released').batch(torch.arange(1))[0]
    m, s = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    assert torch.allclose(x_def[0, :, 0, 0], -m / s) and torch.allclose(x_def[0, :, 0, 1], (1 - m) / s)   # hand-computed
    assert torch.allclose(x_rel, x_def / 255)
    assert x_rel.abs().max() < 0.011                     # the released network sees inputs of about ±0.01
    with pytest.raises(ValueError, match='released'): TensorSegData(ims, ms, normalize='zscore')
    with pytest.raises(ValueError): apply_normalize(x_def, 'unit')

@pytest.mark.parametrize('flag', [None, 'released'])
def test_cli_normalize_flag_recorded_and_used_by_eval(tmp_path, flag):
    from medseg_tutor.data.synthetic import make_example_dataset
    make_example_dataset('busi', tmp_path/'busi', n=12, size=32)
    out = tmp_path/'run'
    argv = ['train', '--recipe', 'mobileutr-busi', '--data-root', str(tmp_path), '--size', '32', '--max-steps', '2',
            '--out', str(out), '--device', 'cpu', '--no-progress'] + ([] if flag is None else ['--normalize', flag])
    rc, o, e = run_cli(argv)
    assert rc == 0, e
    meta = load_checkpoint(out/'best.pt')['meta']
    assert meta['preprocess']['normalize'] == (flag or 'imagenet')
    rc, o, e = run_cli(['eval', '--ckpt', str(out/'best.pt'), '--data-root', str(tmp_path), '--json', '--device', 'cpu'])
    assert rc == 0, e
    res = json.loads(o[o.index('{'):])
    assert 0 <= res['iou'] <= 1 and 0 <= res['iou_pooled'] <= 1      # pooled IoU too: the infrared tables report it

def test_cli_normalize_refused_where_it_does_not_apply(tmp_path):
    rc, o, e = run_cli(['train', '--recipe', 'demo-mobileutr', '--normalize', 'released', '--max-steps', '1',
                        '--out', str(tmp_path/'d'), '--device', 'cpu'])
    assert rc != 0 and 'BUSI/SIRST recipes' in e and 'Traceback' not in e
    rc, o, e = run_cli(['train', '--recipe', 'mambamim-pretrain', '--normalize', 'released', '--max-steps', '1',
                        '--out', str(tmp_path/'m'), '--device', 'cpu'])      # a recipe with its own runner: refused before it
    assert rc != 0 and 'BUSI/SIRST recipes' in e and 'Traceback' not in e
