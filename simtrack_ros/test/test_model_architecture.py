"""Architecture of the SimTrack model: official keys and sizes, token scheme, heads."""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from simtrack_ros.model import build_model, get_config, SimTrack
from simtrack_ros.model.backbone import SimTrackBackbone
from simtrack_ros.model.clip_vit import LayerNorm, QuickGELU, SelfAttention
from simtrack_ros.model.corner_head import CornerPredictor

CLASS_PREFIXES = ('cls_projection.', 'classifier.', 'fusion_layer.')

# The official SimTrack-B/16 state dict (reference §2): '{i}' is every block 0..11 and
# '{c}' both corner towers (tl, br).
_OFFICIAL_B16 = [
    ('backbone.visual.class_embedding', (768,)),
    ('backbone.visual.positional_embedding', (197, 768)),
    ('backbone.visual.proj', (768, 512)),
    ('backbone.visual.conv1.weight', (768, 3, 16, 16)),
    ('backbone.visual.ln_pre.weight', (768,)),
    ('backbone.visual.ln_pre.bias', (768,)),
    ('backbone.visual.transformer.resblocks.{i}.attn.in_proj_weight', (2304, 768)),
    ('backbone.visual.transformer.resblocks.{i}.attn.in_proj_bias', (2304,)),
    ('backbone.visual.transformer.resblocks.{i}.attn.out_proj.weight', (768, 768)),
    ('backbone.visual.transformer.resblocks.{i}.attn.out_proj.bias', (768,)),
    ('backbone.visual.transformer.resblocks.{i}.ln_1.weight', (768,)),
    ('backbone.visual.transformer.resblocks.{i}.ln_1.bias', (768,)),
    ('backbone.visual.transformer.resblocks.{i}.mlp.c_fc.weight', (3072, 768)),
    ('backbone.visual.transformer.resblocks.{i}.mlp.c_fc.bias', (3072,)),
    ('backbone.visual.transformer.resblocks.{i}.mlp.c_proj.weight', (768, 3072)),
    ('backbone.visual.transformer.resblocks.{i}.mlp.c_proj.bias', (768,)),
    ('backbone.visual.transformer.resblocks.{i}.ln_2.weight', (768,)),
    ('backbone.visual.transformer.resblocks.{i}.ln_2.bias', (768,)),
    ('backbone.visual.ln_post.weight', (768,)),
    ('backbone.visual.ln_post.bias', (768,)),
    ('backbone.pos_fc.0.weight', (384, 3)),
    ('backbone.pos_fc.0.bias', (384,)),
    ('backbone.pos_fc.2.weight', (768, 384)),
    ('backbone.pos_fc.2.bias', (768,)),
    ('bottleneck.weight', (256, 768)),
    ('bottleneck.bias', (256,)),
    ('box_head.conv5_{c}.weight', (1, 32, 1, 1)),
    ('box_head.conv5_{c}.bias', (1,)),
]
_CORNER_CONVS = {1: (256, 256), 2: (128, 256), 3: (64, 128), 4: (32, 64)}


def official_b16_table() -> Dict[str, Tuple[int, ...]]:
    table: Dict[str, Tuple[int, ...]] = {}
    for pattern, shape in _OFFICIAL_B16:
        for i in range(12) if '{i}' in pattern else [0]:
            for c in ('tl', 'br') if '{c}' in pattern else ['']:
                table[pattern.format(i=i, c=c)] = shape
    for n, (out_ch, in_ch) in _CORNER_CONVS.items():
        for c in ('tl', 'br'):
            prefix = f'box_head.conv{n}_{c}'
            table[f'{prefix}.0.weight'] = (out_ch, in_ch, 3, 3)
            table[f'{prefix}.0.bias'] = (out_ch,)
            for name in ('weight', 'bias', 'running_mean', 'running_var'):
                table[f'{prefix}.1.{name}'] = (out_ch,)
            table[f'{prefix}.1.num_batches_tracked'] = ()
    return table


@pytest.fixture(scope='module')
def b16() -> SimTrack:
    torch.manual_seed(0)
    return build_model('simtrack-b16').eval()


def tiny(**overrides) -> SimTrack:
    torch.manual_seed(0)
    return build_model(get_config('tiny', **overrides)).eval()


def inputs(config, batch: int = 2, anno=(0.3, 0.25, 0.4, 0.5)):
    gen = torch.Generator().manual_seed(1)
    template = torch.randn(batch, 3, config.template_size, config.template_size, generator=gen)
    search = torch.randn(batch, 3, config.search_size, config.search_size, generator=gen)
    return template, search, torch.tensor([anno] * batch)


def test_b16_official_keys_shapes_and_counts(b16):
    official = {k: tuple(v.shape) for k, v in b16.state_dict().items()
                if not k.startswith(CLASS_PREFIXES)}
    expected = official_b16_table()
    assert len(expected) == 218
    assert official == expected
    params = dict(b16.named_parameters())
    assert sum(p.numel() for k, p in params.items() if not k.startswith(CLASS_PREFIXES)) \
        == 88_643_458
    assert sum(p.numel() for k, p in params.items() if k.startswith(CLASS_PREFIXES)) \
        == 256 * 512 + 512 + 512 * 10 + 10 == 136_714
    assert 'fusion_layer' not in dict(b16.named_children())


def test_b16_one_forward(b16):
    template, search, anno = inputs(b16.config, batch=1)
    with torch.no_grad():
        tokens = b16.encode_template(template, anno)
        out = b16.forward_search(tokens, search)
    assert tokens.shape == (1, 49 + 16, 768)
    assert b16.cls_token_index == 49
    assert out['pred_boxes'].shape == (1, 1, 4)
    assert out['score_map_tl'].shape == out['score_map_br'].shape == (1, 14, 14)
    assert out['cls_logits'].shape == (1, 10)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_class_stream_with_fusion_counts():
    model = tiny(fusion=True)
    fusion = model.fusion_layer
    assert fusion.weight.shape == (64, 128) and not fusion.weight.any() and not fusion.bias.any()
    assert {'cls_projection', 'classifier', 'fusion_layer'} <= set(dict(model.named_children()))


def test_sdpa_attention_matches_multihead_attention():
    torch.manual_seed(0)
    ours = SelfAttention(64, 4)
    nn.init.normal_(ours.in_proj_bias)
    reference = nn.MultiheadAttention(64, 4)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(3, 11, 64)
    expected, _ = reference(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1),
                            need_weights=False)
    torch.testing.assert_close(ours(x), expected.transpose(0, 1), atol=1e-5, rtol=1e-5)


def test_layer_norm_fp32_and_quick_gelu():
    norm = LayerNorm(8)
    x = torch.randn(2, 8).to(torch.bfloat16)
    out = norm(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, F.layer_norm(x.float(), (8,)).to(torch.bfloat16))
    v = torch.tensor([-1.0, 0.0, 2.0])
    torch.testing.assert_close(QuickGELU()(v), v * torch.sigmoid(1.702 * v))


def test_template_coverage_by_hand():
    backbone = SimTrackBackbone(get_config('tiny'))
    cell = 16 / 112
    # x1 = 1 cell, y1 = 1 cell, w = 2 cells, h = 1.5 cells: cells (1,1), (1,2) full,
    # (2,1), (2,2) half; plus a second box beyond the image, clamped to [0, 1].
    anno = torch.tensor([[cell, cell, 2 * cell, 1.5 * cell],
                         [6.5 * cell, -0.25 * cell, 5.0, 1.25 * cell]])
    coverage = backbone.template_coverage(anno).view(2, 7, 7)
    expected = torch.zeros(2, 7, 7)
    expected[0, 1, 1:3] = 1.0
    expected[0, 2, 1:3] = 0.5
    expected[1, 0, 6] = 0.5
    torch.testing.assert_close(coverage, expected)
    # Row-major centres, normalised by the template size.
    torch.testing.assert_close(backbone.cell_centres[9], torch.tensor([2.5, 1.5]) * cell)


def _fp32_bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize('patch, foveal', [(16, 64), (14, 56)], ids=['B16', 'L14'])
def test_template_cell_geometry_is_the_official_fp32_values(patch: int, foveal: int):
    """Cell centres are (patch·c + patch/2) / T and edges patch·k / T, each divided once."""
    backbone = SimTrackBackbone(get_config('tiny', patch_size=patch, foveal_size=foveal))
    tz = 112 // patch
    centres = backbone.cell_centres.numpy().reshape(tz, tz, 2)
    expected = np.array([np.float32((patch * c + patch / 2) / 112) for c in range(tz)])
    np.testing.assert_array_equal(_fp32_bits(centres[..., 0]), _fp32_bits([expected] * tz))
    np.testing.assert_array_equal(_fp32_bits(centres[..., 1]), _fp32_bits([expected] * tz).T)
    edges = np.array([np.float32(patch * k / 112) for k in range(tz + 1)])
    boxes = backbone.cell_boxes.numpy().reshape(tz, tz, 4)
    np.testing.assert_array_equal(_fp32_bits(boxes[0, :, 0]), _fp32_bits(edges[:-1]))
    np.testing.assert_array_equal(_fp32_bits(boxes[:, 0, 3]), _fp32_bits(edges[1:]))
    if patch == 16:  # literal pins: 8/112, 24/112, 72/112, 104/112 rounded once to fp32
        pins = {0: '0x1.24924ap-4', 1: '0x1.b6db6ep-3', 4: '0x1.492492p-1', 6: '0x1.db6db6p-1'}
        for c, bits in pins.items():
            assert centres[0, c, 0] == float.fromhex(bits) == centres[c, 0, 1]
        # The mean of the divided edges is one fp32 step off for c = 1, 4 and 6.
        divided = torch.arange(tz + 1, dtype=torch.float32) * patch / 112
        averaged = ((divided[:-1] + divided[1:]) / 2).numpy()
        assert np.flatnonzero(_fp32_bits(averaged) != _fp32_bits(expected)).tolist() == [1, 4, 6]


def test_template_and_foveal_position_embedding_by_hand():
    model = tiny()
    backbone = model.backbone
    nn.init.zeros_(backbone.visual.conv1.weight)  # tokens = position embeddings only
    cell = 16 / 112
    anno = torch.tensor([[cell, cell, 2 * cell, 1.5 * cell]])
    tokens = model.encode_template(torch.randn(1, 3, 112, 112), anno)
    assert tokens.shape == (1, 49 + 16, 192)
    # Template cell (2, 1): coverage 0.5 -> s = 0.75, centre (1.5, 2.5) cells.
    feature = torch.tensor([0.75, 1.5 * cell, 2.5 * cell])
    torch.testing.assert_close(tokens[0, 2 * 7 + 1], backbone.pos_fc(feature) * 2 - 1)
    # Foveal token (i, j) = mean of template cells (i+1, j+1) and (i+2, j+2).
    grid = tokens[0, :49].view(7, 7, -1)
    foveal = tokens[0, 49:].view(4, 4, -1)
    for i, j in [(0, 0), (1, 3), (3, 2)]:
        torch.testing.assert_close(foveal[i, j], (grid[i + 1, j + 1] + grid[i + 2, j + 2]) / 2)


def test_foveal_tokens_come_from_the_centre_crop():
    model = tiny()
    backbone = model.backbone
    with torch.no_grad():
        backbone.visual.conv1.weight.zero_()
        backbone.visual.conv1.weight[0, 0] = 1.0 / 16 ** 2  # channel 0 = mean of red pixels
    rows = torch.arange(112, dtype=torch.float32).view(1, 1, 112, 1).expand(1, 3, 112, 112)
    anno = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    pos = backbone.template_position(anno)
    tokens = backbone.embed_template(rows.contiguous(), anno)
    foveal = (tokens[0, 49:, 0] - backbone.foveal_position(pos)[0, :, 0]).view(4, 4)
    # pad = (7 - 4) * 16 / 2 = 24 px: foveal row i covers pixels 24 + 16 i .. 39 + 16 i.
    expected = (24 + 16 * torch.arange(4.0) + 7.5).view(4, 1).expand(4, 4)
    torch.testing.assert_close(foveal, expected)
    template = (tokens[0, :49, 0] - pos[0, :, 0]).view(7, 7)
    torch.testing.assert_close(template[:, 0], 16 * torch.arange(7.0) + 7.5)


def test_token_layout_without_blocks():
    model = tiny(layers=0)
    visual = model.backbone.visual
    with torch.no_grad():
        visual.ln_post.weight.normal_()
    template, search, anno = inputs(model.config)
    tokens = model.encode_template(template, anno)
    out = model.backbone.forward_tokens(tokens, search)
    assert out.shape == (2, 49 + 1 + 196, 192)  # foveal tokens dropped

    def encode(x):
        return visual.ln_post(visual.ln_pre(x))

    search_tokens = visual.conv1(search).flatten(2).transpose(1, 2)
    search_tokens = search_tokens + visual.positional_embedding[1:]
    cls = visual.class_embedding + visual.positional_embedding[0]
    torch.testing.assert_close(out[:, :49], encode(tokens[:, :49]))
    torch.testing.assert_close(out[:, 49], encode(cls).expand(2, -1))
    torch.testing.assert_close(out[:, 50:], encode(search_tokens))


def test_cached_template_equals_full_forward_and_cls_index():
    model = tiny()
    template, search, anno = inputs(model.config)
    with torch.no_grad():
        full = model(template, search, anno)
        tokens = model.encode_template(template, anno)
        cached = model.forward_search(tokens, search)
        backbone_out = model.backbone(template, search, anno)
        cls = model.bottleneck(backbone_out[:, 49])
        logits = model.classifier(F.relu(model.cls_projection(cls)))
    for key in full:
        torch.testing.assert_close(cached[key], full[key])
    torch.testing.assert_close(full['cls_logits'], logits)
    assert set(full) == {'pred_boxes', 'score_map_tl', 'score_map_br', 'cls_logits',
                         'cls_features'}


def test_soft_argmax_of_one_hot_maps_is_the_grid_position():
    head = CornerPredictor(inplanes=16, channel=16, feat_sz=5, stride=8)
    score = torch.full((2, 5, 5), -1e4)
    score[0, 3, 1] = 1e4  # row 3, col 1
    score[1, 0, 4] = 1e4
    x, y = head.soft_argmax(score)
    torch.testing.assert_close(x, torch.tensor([1 * 8 / 40, 4 * 8 / 40]))
    torch.testing.assert_close(y, torch.tensor([3 * 8 / 40, 0.0]))
    keys = set(head.state_dict())
    assert {'conv1_tl.0.weight', 'conv4_br.1.running_var', 'conv5_tl.weight'} <= keys
    assert head.conv4_tl[0].out_channels == 2 and head.conv5_br.in_channels == 2


def test_fusion_off_and_zero_fusion_give_identical_boxes():
    plain = tiny()
    fused = tiny(fusion=True)
    missing = fused.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ['fusion_layer.bias', 'fusion_layer.weight']
    template, search, anno = inputs(plain.config)
    with torch.no_grad():
        a = plain(template, search, anno)
        b = fused(template, search, anno, run_cls_head=False)
    assert torch.equal(a['pred_boxes'], b['pred_boxes'])
    assert torch.equal(a['score_map_tl'], b['score_map_tl'])
    assert 'cls_features' in b and 'cls_logits' not in b  # the stream ran for fusion only


def test_head_flags_and_probabilities():
    model = tiny()
    template, search, anno = inputs(model.config)
    with torch.no_grad():
        boxes_only = model(template, search, anno, run_cls_head=False)
        cls_only = model(template, search, anno, run_box_head=False)
    assert set(boxes_only) == {'pred_boxes', 'score_map_tl', 'score_map_br'}
    assert set(cls_only) == {'cls_logits', 'cls_features'}
    probs = model.class_probabilities(cls_only['cls_logits'])
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))
    multi = tiny(multi_label=True)
    torch.testing.assert_close(multi.class_probabilities(cls_only['cls_logits']),
                               torch.sigmoid(cls_only['cls_logits']))
    assert model.class_names == model.config.class_names and model.trained_heads == set()
    assert not model.cls_head_trained


def test_dropout_only_in_train_mode_and_freezing():
    model = tiny()
    template, search, anno = inputs(model.config)
    model.train()
    first = model(template, search, anno, run_box_head=False)['cls_logits']
    second = model(template, search, anno, run_box_head=False)['cls_logits']
    assert not torch.equal(first, second)
    model.freeze_backbone()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters()
                      if n.startswith(('backbone.', 'bottleneck.'))}
    model.unfreeze_backbone()
    assert all(p.requires_grad for p in model.parameters())


def test_search_position_resized_when_grids_differ():
    model = tiny(search_size=256)
    backbone = model.backbone
    pos = backbone.search_position()
    assert pos.shape == (16 * 16, 192)
    grid = backbone.visual.positional_embedding[1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(16, 16), mode='bilinear', align_corners=False)
    torch.testing.assert_close(pos, expected.flatten(2).transpose(1, 2)[0])
    template, search, anno = inputs(model.config, batch=1)
    with torch.no_grad():
        out = model(template, search, anno)
    assert out['score_map_br'].shape == (1, 16, 16)
    assert torch.equal(tiny().backbone.search_position(),
                       tiny().backbone.visual.positional_embedding[1:])


def test_bad_configs_and_inputs():
    with pytest.raises(NotImplementedError, match='shift'):
        build_model(get_config('tiny', template_size=192))
    model = tiny()
    template, search, anno = inputs(model.config)
    with pytest.raises(ValueError, match='template must be'):
        model(template[:, :, :96, :96], search, anno)
    with pytest.raises(ValueError, match='batch mismatch'):
        model.forward_search(model.encode_template(template, anno), search[:1])


def test_bf16_autocast_close_to_fp32():
    model = tiny()
    template, search, anno = inputs(model.config)
    with torch.no_grad():
        ref = model(template, search, anno)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(template, search, anno)
    assert low['pred_boxes'].dtype == torch.float32
    torch.testing.assert_close(low['pred_boxes'], ref['pred_boxes'], atol=2e-2, rtol=0)
