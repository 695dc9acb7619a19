"Every recipe that `medseg-tutor train --list` shows trains end to end: two optimiser steps on tiny stand-in data."
import os, sys, subprocess
from pathlib import Path
import pytest, torch
from medseg_tutor.cli import main
from medseg_tutor.train.recipes import list_recipes, get_recipe
from medseg_tutor.train.checkpoint import load_checkpoint
from medseg_tutor.data.synthetic import make_example_dataset

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
DATASETS = {'busi': 'busi', 'sirst': 'sirst', 'own': 'kvasir', 'synthetic': 'busi', '3d-ct': 'ct_samples',
            'msd_hippocampus': 'msd_hippocampus', 'medmnist': 'medmnist'}

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    made = {}
    def get(name):
        if name not in made: made[name] = make_example_dataset(name, root/name, n=6, size=64)
        return made[name]
    return get

@pytest.fixture(scope='module')
def runs(tmp_path_factory): return {'dir': tmp_path_factory.mktemp('runs'), 'done': {}}

def data_root(recipe, data):
    ds = DATASETS.get(recipe.dataset, recipe.dataset)
    root = data(ds)
    return root if recipe.dataset == 'own' or ds in ('ct_samples', 'msd_hippocampus', 'medmnist') else root.parent

def train(name, data, runs):
    if name in runs['done']: return runs['done'][name]
    r = get_recipe(name)
    init = []
    if r.init is not None: init = ['--init', str(train(r.init, data, runs)/'best.pt')]
    extra = ['--variant', 'tiny', '--n-crops', '1', '--modality', 'ct' if r.task == 'mim' else 'mri'] if r.task in ('mim', '3d-seg') else []
    out = runs['dir']/name
    rc = main(['train', '--recipe', name, '--data-root', str(data_root(r, data)), '--size', '32' if r.task in ('mim', '3d-seg') else '64',
               '--batch-size', '1', '--max-steps', '2', '--device', 'cpu', '--out', str(out), '--no-progress', *init, *extra])
    assert rc == 0, name
    runs['done'][name] = out
    return out

@pytest.mark.parametrize('name', list_recipes())
def test_every_listed_recipe_trains_two_steps(name, data, runs):
    out = train(name, data, runs)
    assert (out/'best.pt').is_file() and (out/'log.csv').is_file()
    ck = load_checkpoint(out/'best.pt')
    assert ck['meta']['recipe'] == name and isinstance(ck['meta']['model'], dict)
    assert load_checkpoint(out/'last.pt')['global_step'] == 2

def test_python_dash_m_is_the_cli():
    r = subprocess.run([sys.executable, '-m', 'medseg_tutor', 'train', '--list'], capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'}, cwd=REPO)
    assert r.returncode == 0 and all(n in r.stdout for n in list_recipes()), r.stderr[-2000:]
