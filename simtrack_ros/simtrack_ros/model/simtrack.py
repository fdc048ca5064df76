"""The dual-head SimTrack model: one-stream CLIP ViT, bottleneck, corner head, challenge head.

State-dict keys of the box part (``backbone.*``, ``bottleneck.*``, ``box_head.*``) are the
official SimTrack ones; the classification stream adds ``cls_projection.*``, ``classifier.*``
and (with fusion) ``fusion_layer.*``.
"""
from __future__ import annotations

from typing import Dict, Optional, Set, Tuple, Union

import torch
from torch import nn

from simtrack_ros.model.backbone import SimTrackBackbone
from simtrack_ros.model.challenge_calibration import ChallengeCalibration
from simtrack_ros.model.challenge_head import ChallengeStream
from simtrack_ros.model.config import get_config, SimTrackConfig
from simtrack_ros.model.corner_head import CornerPredictor

#: Names of the heads a checkpoint can carry trained weights for.
HEAD_NAMES = ('box', 'cls')


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) → (cx, cy, w, h) on the last dimension."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


class SimTrack(ChallengeStream):
    """SimTrack with a tracking-challenge classification stream.

    ``encode_template`` runs once per target; ``forward_search`` once per frame.
    ``trained_heads`` says which heads hold trained weights (set by the checkpoint loaders);
    ``challenge_calibration``, when fitted, turns the head's logits and the tracker's cues into
    the published probabilities (:mod:`.challenge_calibration`).
    """

    def __init__(self, config: SimTrackConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = SimTrackBackbone(config)
        self.box_head = CornerPredictor(
            config.hidden_dim, config.hidden_dim, config.search_grid, config.patch_size)
        self.bottleneck = nn.Linear(config.width, config.hidden_dim)
        self.build_class_stream(config)
        self.trained_heads: Set[str] = set()
        self.challenge_calibration: Optional[ChallengeCalibration] = None

    @property
    def class_names(self) -> Tuple[str, ...]:
        """Class names in output order (= ``config.class_names``)."""
        return self.config.class_names

    @property
    def cls_head_trained(self) -> bool:
        """Whether the classification head holds trained weights."""
        return 'cls' in self.trained_heads

    @property
    def cls_token_index(self) -> int:
        """Index of the CLS token in the backbone output (tz², 49 for B/16)."""
        return self.config.template_grid ** 2

    def encode_template(self, template: torch.Tensor, template_anno: torch.Tensor
                        ) -> torch.Tensor:
        """Template tokens to cache: B×(tz²+fz²)×width.

        ``template`` is B×3×T×T normalised; ``template_anno`` B×4 (x1, y1, w, h) / T.
        """
        return self.backbone.embed_template(template, template_anno)

    def forward_search(self, template_tokens: torch.Tensor, search: torch.Tensor,
                       run_box_head: bool = True, run_cls_head: bool = True
                       ) -> Dict[str, torch.Tensor]:
        """Track in a B×3×S×S search crop given cached template tokens.

        Returns ``pred_boxes`` (B×1×4 cx, cy, w, h normalised to the crop), ``score_map_tl`` and
        ``score_map_br`` (B×H×W logits) when ``run_box_head``; ``cls_logits`` (B×N) when
        ``run_cls_head``; ``cls_features`` (B×cls_hidden_dim) whenever the class stream runs
        (requested, or needed by fusion).
        """
        tokens = self.backbone.forward_tokens(template_tokens, search)
        # Only CLS and search tokens feed the heads; the bottleneck is per token.
        feat = self.bottleneck(tokens[:, self.cls_token_index:])
        out: Dict[str, torch.Tensor] = {}
        fuse = run_box_head and self.fusion_layer is not None
        fusion = None
        if run_cls_head or fuse:
            stream = self.run_class_stream(feat[:, 0], with_logits=run_cls_head)
            out['cls_features'] = stream.features
            fusion = stream.fusion
            if stream.logits is not None:
                out['cls_logits'] = stream.logits
        if run_box_head:
            search_feat = feat[:, 1:]
            if fuse:
                search_feat = search_feat + fusion.unsqueeze(1)
            size = self.config.search_grid
            fmap = search_feat.transpose(1, 2).reshape(search_feat.shape[0], -1, size, size)
            boxes, score_tl, score_br = self.box_head(fmap)
            out['pred_boxes'] = box_xyxy_to_cxcywh(boxes).unsqueeze(1)
            out['score_map_tl'] = score_tl
            out['score_map_br'] = score_br
        return out

    def forward(self, template: torch.Tensor, search: torch.Tensor,
                template_anno: torch.Tensor, run_box_head: bool = True,
                run_cls_head: bool = True) -> Dict[str, torch.Tensor]:
        """Run the whole model, for training and one-off inference: see :meth:`forward_search`."""
        return self.forward_search(self.encode_template(template, template_anno), search,
                                   run_box_head=run_box_head, run_cls_head=run_cls_head)

    def _set_backbone_grad(self, requires_grad: bool) -> None:
        for module in (self.backbone, self.bottleneck):
            for param in module.parameters():
                param.requires_grad_(requires_grad)

    def freeze_backbone(self) -> None:
        """Stop gradients into the backbone and bottleneck (heads stay trainable)."""
        self._set_backbone_grad(False)

    def unfreeze_backbone(self) -> None:
        """Let gradients into the backbone and bottleneck again."""
        self._set_backbone_grad(True)


def build_model(config: Union[SimTrackConfig, str]) -> SimTrack:
    """Build a model from a config or a config name ('simtrack-b16', 'simtrack-l14', 'tiny')."""
    return SimTrack(get_config(config) if isinstance(config, str) else config)
