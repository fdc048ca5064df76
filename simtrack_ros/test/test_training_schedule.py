"""Settings, presets, parameter groups, the LR schedule, precision, seeding and the sampler."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from simtrack_ros.model import build_model, get_config
from simtrack_ros.training.distributed import EpochSampler, World
from simtrack_ros.training.precision import resolve_device, resolve_precision
from simtrack_ros.training.reproducibility import (derive_seed, rng_state, seed_epoch,
                                                   set_rng_state)
from simtrack_ros.training.schedule import (build_optimizer, LrSchedule, param_groups,
                                            set_trainable)
from simtrack_ros.training.settings import check, PRESETS, resolve, TrainSettings


def small_model():
    return build_model(get_config('tiny', width=64, layers=1, heads=2, hidden_dim=32,
                                  cls_hidden_dim=32))


def test_presets_are_the_recipes_and_explicit_flags_win():
    mvtd = resolve({'preset': 'mvtd'})
    assert (mvtd.epochs, mvtd.samples_per_epoch, mvtd.lr, mvtd.batch_size, mvtd.grad_clip,
            mvtd.backbone_lr_mult, mvtd.schedule, mvtd.lr_drop_epochs) == (
        50, 6000, 1e-4, 64, 0.1, 0.1, 'step', (40,))
    scratch = resolve({'preset': 'scratch'})
    assert (scratch.lr, scratch.warmup_steps, scratch.grad_clip, scratch.batch_size,
            scratch.pretrained_weights, scratch.config) == (3e-4, 50, 1.0, 16, None, 'tiny')
    guide = resolve({'preset': 'guide', 'lr': 5e-4, 'freeze_backbone': False})
    assert guide.task == 'cls' and guide.batch_size == 8 and guide.lr == 5e-4
    assert not guide.freeze_backbone
    stored = TrainSettings(epochs=7, lr=2e-4)
    assert resolve({'epochs': 9}, stored) == stored.replace(epochs=9)
    assert TrainSettings.from_dict(mvtd.to_dict()) == mvtd
    with pytest.raises(ValueError, match='unknown preset'):
        resolve({'preset': 'fast'})
    assert set(PRESETS) == {'guide', 'mvtd', 'scratch'}


@pytest.mark.parametrize('change, message', [
    ({'task': 'both'}, '--task'), ({'batch_size': 0}, '--batch_size'),
    ({'val_split': 1.0}, '--val_split'), ({'stage2_epoch': 9, 'epochs': 5}, '--stage2_epoch'),
    ({'balance': 'sampler', 'task': 'joint'}, '--balance')])
def test_inconsistent_settings_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        check(TrainSettings(**change))


def test_param_groups_follow_the_official_recipe():
    model = small_model()
    groups = {g['name']: g for g in param_groups(model, 0.1)}
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].startswith('backbone.pos_fc.') for p in groups['pos_fc']['params'])
    assert all(names[id(p)].startswith('backbone.visual.')
               for p in groups['backbone']['params'])
    assert not any(names[id(p)].startswith('backbone.') for p in groups['heads']['params'])
    assert (groups['heads']['lr_scale'], groups['pos_fc']['lr_scale'],
            groups['backbone']['lr_scale']) == (1.0, 1.0, 0.1)
    assert sum(len(g['params']) for g in groups.values()) == len(list(model.parameters()))
    optimizer = build_optimizer(model, TrainSettings(lr=1e-4))
    LrSchedule(lr=1e-4, steps_per_epoch=10, epochs=5).apply(optimizer, 0)
    assert [g['lr'] for g in optimizer.param_groups] == pytest.approx([1e-4, 1e-4, 1e-5])


def test_warmup_step_cosine_and_two_stage_learning_rates():
    step = LrSchedule(lr=1.0, steps_per_epoch=10, epochs=50, kind='step', warmup_steps=4,
                      drop_epochs=(40,), gamma=0.1)
    assert [step.lr_at(s) for s in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert step.lr_at(399) == 1.0 and step.lr_at(400) == pytest.approx(0.1)
    cosine = LrSchedule(lr=1.0, steps_per_epoch=10, epochs=2, kind='cosine', min_lr_ratio=0.1)
    assert cosine.lr_at(0) == 1.0 and cosine.lr_at(10) == pytest.approx(0.55)
    assert cosine.lr_at(20) == pytest.approx(0.1)
    two = LrSchedule(lr=1e-3, steps_per_epoch=10, epochs=50, stage2_epoch=30, stage2_lr=1e-5)
    assert two.lr_at(299) == 1e-3 and two.lr_at(300) == 1e-5


def test_trainable_parameters_by_task_freeze_and_stage():
    model = small_model()

    def trainable(**settings):
        return set_trainable(model, TrainSettings(**settings), 0)
    cls_frozen = trainable(task='cls', freeze_backbone=True)
    assert cls_frozen and all(n.startswith(('cls_projection.', 'classifier.'))
                              for n in cls_frozen)
    assert not any(n.startswith('box_head.') for n in trainable(task='cls'))
    box = trainable(task='box')
    assert not any(n.startswith(('cls_projection.', 'classifier.')) for n in box)
    assert any(n.startswith('backbone.visual.') for n in box)
    two_stage = TrainSettings(task='joint', stage2_epoch=2, epochs=4)
    first, second = (set_trainable(model, two_stage, e) for e in (1, 2))
    assert not any(n.startswith(('backbone.', 'bottleneck.')) for n in first)
    assert set(first) < set(second) and any(n.startswith('backbone.visual.') for n in second)


def test_precision_choices_on_the_cpu():
    cpu = resolve_device('cpu')
    assert resolve_precision('auto', cpu)[0].name == 'fp32'
    fp16, notes = resolve_precision('fp16', cpu)
    assert fp16.scaler().is_enabled() and notes
    assert not resolve_precision('bf16', cpu)[0].scaler().is_enabled()
    with fp16.autocast():
        assert torch.nn.Linear(4, 4)(torch.ones(1, 4)).dtype == torch.float16
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='no CUDA'):
            resolve_device('cuda')


def test_rng_state_round_trips_as_weights_only_data(tmp_path):
    seed_epoch(3, 1, 0)
    state = rng_state()
    torch.save(state, tmp_path / 'rng.pt')
    loaded = torch.load(tmp_path / 'rng.pt', weights_only=True)
    expected = (torch.rand(3), np.random.rand(3), pickle.dumps(np.random.get_state()))
    set_rng_state(loaded)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert derive_seed(1, 2) != derive_seed(2, 1)


def test_epoch_sampler_shards_shuffles_and_balances():
    worlds = [World(rank=r, size=2) for r in range(2)]
    shares = [list(EpochSampler(7, w, seed=1)) for w in worlds]
    assert len(shares[0]) == len(shares[1]) == 4
    assert set(shares[0] + shares[1]) == set(range(7))
    sampler = EpochSampler(7, World(), seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(7))
    val = [list(EpochSampler(7, w, shuffle=False)) for w in worlds]
    assert sorted(val[0] + val[1]) == list(range(7))
    weights = np.array([1.0] * 90 + [9.0] * 10)
    drawn = np.array(list(EpochSampler(100, World(), weights=weights)))
    assert 0.3 < (drawn >= 90).mean() < 0.7
    assert math.isclose(len(drawn), 100)
