"""Stand-in for the SimTrack model in tracker tests, and a synthetic sequence generator.

The stand-in has the model's tracking interface. Its "network" is exact: it finds the pure
red pixels of the search crop and returns their bounding box, so the tracker's geometry
(crop, map-back, clip) alone decides whether the true motion is recovered.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
from torch import nn

from simtrack_ros.model.config import get_config
from simtrack_ros.tracking.preprocess import IMAGENET_MEAN, IMAGENET_STD, PIXEL_MAX

RED = (255, 0, 0)
BACKGROUND_MAX_RED = 150        # background red channel stays below the detection threshold
RED_THRESHOLD = 200
OTHER_THRESHOLD = 60
PEAK_LOGIT = 50.0               # corner-map logit at the corner's cell (one-hot confidence)


class StandInModel(nn.Module):
    """Red-object detector with the tracker-facing API of ``SimTrack``."""

    def __init__(self, multi_label: bool = False, cls_trained: bool = False) -> None:
        super().__init__()
        self.config = get_config('tiny', multi_label=multi_label)
        self.cls_head_trained = cls_trained
        self.fail = False
        self.batch_sizes = []
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def class_names(self) -> Tuple[str, ...]:
        return self.config.class_names

    def encode_template(self, template: torch.Tensor, template_anno: torch.Tensor
                        ) -> torch.Tensor:
        return template_anno[:, None, :].float()

    def _red_box(self, search: torch.Tensor) -> torch.Tensor:
        """Normalised (cx, cy, w, h) of the red pixels per crop; crop centre if none."""
        pixels = ((search * self.std + self.mean) * PIXEL_MAX).round()
        mask = ((pixels[:, 0] > RED_THRESHOLD) & (pixels[:, 1] < OTHER_THRESHOLD)
                & (pixels[:, 2] < OTHER_THRESHOLD))
        size = search.shape[-1]
        boxes = []
        for sample in mask:
            rows = torch.nonzero(sample.any(dim=1)).flatten()
            cols = torch.nonzero(sample.any(dim=0)).flatten()
            if len(rows) == 0:
                boxes.append([0.5, 0.5, 0.25, 0.25])
                continue
            x1, x2 = cols[0].item(), cols[-1].item() + 1
            y1, y2 = rows[0].item(), rows[-1].item() + 1
            boxes.append([(x1 + x2) / 2 / size, (y1 + y2) / 2 / size,
                          (x2 - x1) / size, (y2 - y1) / size])
        return torch.tensor(boxes, dtype=torch.float32, device=search.device)

    def _corner_map(self, points: torch.Tensor) -> torch.Tensor:
        """One-hot logit maps with the peak at each normalised point's cell."""
        grid = self.config.search_grid
        cells = (points * grid).floor().clamp(0, grid - 1).long()
        maps = torch.zeros(points.shape[0], grid, grid, device=points.device)
        maps[torch.arange(points.shape[0]), cells[:, 1], cells[:, 0]] = PEAK_LOGIT
        return maps

    def forward_search(self, template_tokens: torch.Tensor, search: torch.Tensor,
                       run_box_head: bool = True, run_cls_head: bool = True
                       ) -> Dict[str, torch.Tensor]:
        self.batch_sizes.append(search.shape[0])
        boxes = self._red_box(search)
        out = {
            'pred_boxes': boxes[:, None, :],
            'score_map_tl': self._corner_map(boxes[:, :2] - boxes[:, 2:] / 2),
            'score_map_br': self._corner_map(boxes[:, :2] + boxes[:, 2:] / 2),
        }
        if run_cls_head:
            steps = torch.arange(self.config.num_classes, dtype=torch.float32,
                                 device=search.device)
            out['cls_logits'] = steps[None] * template_tokens[:, 0, 2:3]
        if self.fail:
            out = {key: torch.full_like(value, float('nan')) for key, value in out.items()}
        return out


def textured_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random smooth-ish texture whose red channel never reaches the detector threshold."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    frame[..., 0] = frame[..., 0] % BACKGROUND_MAX_RED
    return frame


def draw_box(frame: np.ndarray, box: Tuple[int, int, int, int]) -> np.ndarray:
    """Return a copy of ``frame`` with a filled pure red rectangle (integer x, y, w, h)."""
    out = frame.copy()
    x, y, w, h = box
    out[max(y, 0):max(y + h, 0), max(x, 0):max(x + w, 0)] = RED
    return out


def iou(a: Tuple[float, ...], b: Tuple[float, ...]) -> float:
    """Intersection over union of two xywh boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)
