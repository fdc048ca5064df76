"""The challenge classes: names, annotation keys, the single-label rule and reordering."""
from __future__ import annotations

import pytest

from simtrack_ros import challenges


def test_ten_classes_in_contract_order():
    assert challenges.NUM_CHALLENGES == 10
    assert challenges.CHALLENGE_NAMES[0] == 'motion_blur'
    assert challenges.CHALLENGE_NAMES[5] == 'occlusion'
    assert challenges.CHALLENGE_NAMES[9] == 'normal'
    assert set(challenges.CHALLENGE_LABELS) == set(challenges.CHALLENGE_NAMES)


def test_annotation_keys_map_to_names():
    assert challenges.challenge_id('illu_change') == 1
    assert challenges.challenge_id('low_res') == 7
    assert challenges.canonical_name('variance_appear') == 'variance_in_appearance'
    with pytest.raises(ValueError, match='unknown challenge class'):
        challenges.canonical_name('fog')


def test_single_label_uses_explicit_priority_not_key_order():
    flags = {'occlusion': 1, 'motion_blur': 0, 'low_res': 1, 'illu_change': 1}
    assert challenges.single_label(flags) == 'illumination_change'
    assert challenges.single_label({'occlusion': 1, 'low_res': 1}) == 'occlusion'
    assert challenges.single_label({'low_res': 1},) == 'low_resolution'
    assert challenges.single_label({}) == 'normal'
    custom = ('low_resolution', 'occlusion')
    assert challenges.single_label({'occlusion': 1, 'low_res': 1}, custom) == 'low_resolution'


def test_reorder_index_by_name():
    guide_order = ['motion_blur', 'illu_change', 'variance_appear', 'partial_visibility',
                   'background_clutter', 'occlusion', 'scale_variation', 'low_res',
                   'low_contrast', 'normal']
    index = challenges.reorder_index(guide_order)
    reordered = [challenges.canonical_name(guide_order[i]) for i in index]
    assert reordered == list(challenges.CHALLENGE_NAMES)
    with pytest.raises(ValueError, match='do not match'):
        challenges.reorder_index(guide_order[:-1] + ['fog_bank'][:0])


def test_top_class():
    assert challenges.top_class([], []) is None
    assert challenges.top_class([0.1, 0.7, 0.2], ['a', 'b', 'c']) == ('b', pytest.approx(0.7))
