"""STARK's corner predictor (``Corner_Predictor``), as SimTrack uses it.

Two independent conv towers score every search cell as the box's top-left (``_tl``) or
bottom-right (``_br``) corner; a soft-argmax over each score map gives the corner. The grid is
``0, stride, ..., (feat_sz - 1) * stride`` (no half-cell offset) divided by ``feat_sz * stride``.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


def conv_bn_relu(in_planes: int, out_planes: int) -> nn.Sequential:
    """Conv3×3 (padding 1, bias) → BatchNorm2d → ReLU, keys ``.0`` and ``.1``."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=3, padding=1, bias=True),
        nn.BatchNorm2d(out_planes),
        nn.ReLU(inplace=True))


class CornerPredictor(nn.Module):
    """Corner head: B×inplanes×feat_sz×feat_sz features → normalised xyxy box + score maps."""

    def __init__(self, inplanes: int, channel: int, feat_sz: int, stride: int) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.feat_sz = feat_sz
        self.img_sz = feat_sz * stride
        widths = (channel, channel // 2, channel // 4, channel // 8)
        for corner in ('tl', 'br'):
            in_planes = inplanes
            for index, out_planes in enumerate(widths, start=1):
                setattr(self, f'conv{index}_{corner}', conv_bn_relu(in_planes, out_planes))
                in_planes = out_planes
            setattr(self, f'conv5_{corner}', nn.Conv2d(in_planes, 1, kernel_size=1))
        coords = torch.arange(feat_sz, dtype=torch.float32) * stride
        coord_y, coord_x = torch.meshgrid(coords, coords, indexing='ij')
        self.register_buffer('coord_x', coord_x.reshape(-1), persistent=False)
        self.register_buffer('coord_y', coord_y.reshape(-1), persistent=False)

    def _tower(self, x: torch.Tensor, corner: str) -> torch.Tensor:
        for index in range(1, 6):
            x = getattr(self, f'conv{index}_{corner}')(x)
        return x[:, 0]

    def soft_argmax(self, score_map: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return the expected (x, y) of a B×H×W logit map under its softmax, normalised.

        The result is two B tensors.
        """
        # Elementwise products stay fp32 under autocast (a matmul would drop to bf16/fp16).
        prob = torch.softmax(score_map.flatten(1).float(), dim=1)
        x = (prob * self.coord_x.float()).sum(dim=1) / self.img_sz
        return x, (prob * self.coord_y.float()).sum(dim=1) / self.img_sz

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Boxes (B×4 xyxy in [0, 1], fp32) and the tl/br score maps (B×H×W raw logits)."""
        if x.shape[1:] != (self.inplanes, self.feat_sz, self.feat_sz):
            raise ValueError(
                f'corner head expects B×{self.inplanes}×{self.feat_sz}×{self.feat_sz}, '
                f'got {tuple(x.shape)}')
        score_tl = self._tower(x, 'tl')
        score_br = self._tower(x, 'br')
        x_tl, y_tl = self.soft_argmax(score_tl)
        x_br, y_br = self.soft_argmax(score_br)
        return torch.stack([x_tl, y_tl, x_br, y_br], dim=1), score_tl, score_br
