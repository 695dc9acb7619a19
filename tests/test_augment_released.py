"The released augmentation draw (RandomRotate90() then Flip(), albumentations defaults) as a flag, against the default uniform draw."
import pytest, torch
from conftest import run_cli
from medseg_tutor.core import DataError, ShapeError
from medseg_tutor.data.tensors import (TensorSegData, RELEASED_CODE_PROBS, dihedral_ref, released_code, released_rot_flip_ref,
                                       random_codes)
from medseg_tutor.train.checkpoint import load_checkpoint

def test_every_released_pair_is_the_named_dihedral_map():
    x = torch.rand(2, 3, 6, 6)
    for k in range(4):
        for d in (None, 0, 1, -1):
            assert torch.equal(released_rot_flip_ref(x, k, d), dihedral_ref(x, [released_code(k, d)] * 2)), (k, d)
    # hand-checked cases: an up-down flip alone is code 6, a left-right flip alone code 4, both flips the half turn
    assert (released_code(0, 0), released_code(0, 1), released_code(0, -1), released_code(1, None)) == (6, 4, 2, 1)

def test_released_probabilities_exact():
    want = torch.tensor([8, 2, 4, 2, 3, 1, 3, 1], dtype=torch.float64) / 24     # 1/3, 1/12, 1/6, 1/12, 1/8, 1/24, 1/8, 1/24
    assert torch.allclose(RELEASED_CODE_PROBS, want)
    with pytest.raises(DataError, match='uniform'): random_codes(3, draw='other')
    with pytest.raises(ShapeError, match='square'): random_codes(3, square=False, draw='released')

def _drawn_codes(augment, n=4000):
    "The dihedral code each batch item got, recovered from an image whose 8 maps all differ."
    im = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).expand(n, 1, 4, 4).contiguous()
    d = TensorSegData(im, (im > 7).to(torch.uint8), in_channels=1, normalize='none', augment=augment)
    x, y = d.batch(torch.arange(n), torch.Generator().manual_seed(0))
    maps = torch.stack([dihedral_ref(im[:1].float(), [g])[0] for g in range(8)])        # (8, 1, 4, 4)
    hits = (x[:, None] * 255 - maps[None]).abs().flatten(2).amax(-1) < 1e-3            # (n, 8)
    assert bool((hits.sum(1) == 1).all())
    assert torch.equal(y, (x * 255 > 7.5).float())                                      # the mask got the same map
    return hits.float().argmax(1)

@pytest.mark.parametrize('augment, probs', [(True, torch.full((8,), 1 / 8)), ('dihedral', torch.full((8,), 1 / 8)),
                                            ('released', RELEASED_CODE_PROBS.float())])
def test_tensor_data_draws(augment, probs):
    freq = torch.bincount(_drawn_codes(augment), minlength=8) / 4000
    assert (freq - probs).abs().max() < 0.03, freq            # 4000 draws: sd of a frequency <= 0.008
    with pytest.raises(DataError, match='released'): TensorSegData(torch.zeros(1, 1, 2, 2, dtype=torch.uint8),
                                                                   torch.zeros(1, 1, 2, 2, dtype=torch.uint8), augment='rot90')

def test_cli_augment_flag_recorded_and_refused_where_it_does_not_apply(tmp_path):
    from medseg_tutor.data.synthetic import make_example_dataset
    make_example_dataset('busi', tmp_path/'busi', n=12, size=32)
    out = tmp_path/'run'
    rc, o, e = run_cli(['train', '--recipe', 'mobileutr-busi', '--data-root', str(tmp_path), '--size', '32', '--max-steps', '2',
                        '--out', str(out), '--device', 'cpu', '--no-progress', '--augment', 'released'])
    assert rc == 0, e
    assert load_checkpoint(out/'best.pt')['meta']['data']['augment'] == 'released'
    rc, o, e = run_cli(['train', '--recipe', 'demo-mobileutr', '--augment', 'released', '--max-steps', '1',
                        '--out', str(tmp_path/'d'), '--device', 'cpu'])
    assert rc != 0 and '--augment applies to the BUSI/SIRST recipes' in e and 'Traceback' not in e

def test_released_draw_is_the_benchmark_default_and_resume_keeps_the_draw(tmp_path):
    "BUSI/SIRST recipes draw as the released code by default; --resume refuses a run trained with another draw."
    from medseg_tutor.data.synthetic import make_example_dataset
    make_example_dataset('busi', tmp_path/'busi', n=12, size=32)
    base = ['train', '--recipe', 'mobileutr-busi', '--data-root', str(tmp_path), '--size', '32', '--device', 'cpu', '--no-progress']
    rc, o, e = run_cli(base + ['--max-steps', '2', '--out', str(tmp_path/'a')])
    assert rc == 0, e
    assert load_checkpoint(tmp_path/'a'/'last.pt')['meta']['data']['augment'] == 'released'
    rc, o, e = run_cli(base + ['--max-steps', '2', '--out', str(tmp_path/'b'), '--augment', 'dihedral', '--epochs', '3'])
    assert rc == 0, e
    assert load_checkpoint(tmp_path/'b'/'last.pt')['meta']['data']['augment'] == 'dihedral'
    rc, o, e = run_cli(base + ['--out', str(tmp_path/'b'), '--resume', '--epochs', '3'])       # default draw now: refused
    assert rc != 0 and "trained with augment 'dihedral'" in e and '--augment dihedral' in e and 'Traceback' not in e, e
    rc, o, e = run_cli(base + ['--out', str(tmp_path/'b'), '--resume', '--epochs', '3', '--augment', 'dihedral'])
    assert rc == 0, e
