"""SimTrack's one-stream backbone: CLIP ViT over [template | CLS | search | foveal] tokens.

Token scheme of the official ``CLIPVIT`` (SimTrack, ECCV 2022):

* template patch tokens get a learned position embedding ``pos_fc(s, cx, cy) * 2 - 1`` from
  each cell's target coverage ``s = (coverage + 1) / 2`` and its centre, and no CLIP one;
* CLS = ``class_embedding + positional_embedding[0]``;
* search patch tokens get CLIP's positional embedding, bilinearly resized to the search grid;
* foveal tokens: the centre crop of the template, patch-embedded, with the mean of two
  diagonal neighbours of the template embedding (the official, half-cell-shifted window);
* ``ln_pre``, the blocks, ``ln_post`` on all tokens, then the foveal tokens are dropped.

The template part depends only on the template, so :meth:`SimTrackBackbone.embed_template`
can be run once per target and :meth:`SimTrackBackbone.forward_tokens` once per frame.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from simtrack_ros.model.clip_vit import VisionTransformer
from simtrack_ros.model.config import SimTrackConfig


class SimTrackBackbone(nn.Module):
    """CLIP visual encoder (``visual``) plus the template position MLP (``pos_fc``)."""

    def __init__(self, config: SimTrackConfig) -> None:
        super().__init__()
        self.config = config
        patch, tz, fz = config.patch_size, config.template_grid, config.foveal_grid
        # Official test: the shifted foveal path is taken when (T - F) % 2F == 0.
        if (config.template_size - config.foveal_size) % (2 * config.foveal_size) == 0:
            raise NotImplementedError(
                f'{config.name}: template_size={config.template_size} with '
                f'foveal_size={config.foveal_size} needs the official shifted foveal window '
                f'(shift_flag=True), which is not implemented; choose sizes with '
                f'(template_size - foveal_size) % (2 * foveal_size) != 0')
        if (tz - fz) * patch % 2:
            raise NotImplementedError(
                f'{config.name}: the foveal crop offset ({tz} - {fz}) * {patch} / 2 px is not '
                f'a whole number of pixels')
        self.visual = VisionTransformer(
            config.clip_input_size, patch, config.width, config.layers, config.heads,
            config.clip_proj_dim)
        self.pos_fc = nn.Sequential(
            nn.Linear(3, config.width // 2), nn.ReLU(),
            nn.Linear(config.width // 2, config.width), nn.Sigmoid())
        self.template_grid = tz
        self.search_grid = config.search_grid
        self.foveal_grid = fz
        #: Foveal crop: template pixels [pad, pad + foveal_size) on both axes.
        self.foveal_pad = (tz - fz) * patch // 2
        #: First template cell of the foveal position window (official: (tz - fz) // 2 + 1);
        #: foveal token (i, j) gets the mean of cells (w + i, w + j) and (w - 1 + i, w - 1 + j).
        #: With an odd tz - fz (B/16: 7 - 4) these are the cells the crop patch straddles; with
        #: an even one (the L/14 config) the crop is cell-aligned at w - 1 and the official
        #: formula, kept here for weight compatibility, still mixes in the next diagonal cell.
        self.foveal_window = (tz - fz) // 2 + 1
        # Template cell boxes (xyxy) and centres (cx, cy), row-major, normalised by the template
        # size. Each is a pixel coordinate divided once in fp32, as the official code does:
        # centre c is (patch * c + patch / 2) / T, not the mean of the divided edges.
        pixels = torch.arange(tz + 1, dtype=torch.float32) * patch
        edges = pixels / config.template_size
        centres = (pixels[:-1] + patch / 2) / config.template_size
        y1, x1 = torch.meshgrid(edges[:-1], edges[:-1], indexing='ij')
        y2, x2 = torch.meshgrid(edges[1:], edges[1:], indexing='ij')
        cy, cx = torch.meshgrid(centres, centres, indexing='ij')
        cells = torch.stack([x1, y1, x2, y2], dim=-1).reshape(-1, 4)
        self.register_buffer('cell_boxes', cells, persistent=False)
        self.register_buffer('cell_centres', torch.stack([cx, cy], dim=-1).reshape(-1, 2),
                             persistent=False)

    @property
    def num_template_tokens(self) -> int:
        """Template tokens (tz²) + foveal tokens (fz²) made by :meth:`embed_template`."""
        return self.template_grid ** 2 + self.foveal_grid ** 2

    @property
    def num_output_tokens(self) -> int:
        """Tokens kept after the transformer: template (tz²) + CLS + search (sz²)."""
        return self.template_grid ** 2 + 1 + self.search_grid ** 2

    @property
    def token_dtype(self) -> torch.dtype:
        """Dtype of the residual token stream: the parameters' (fp32 also under autocast)."""
        return self.visual.class_embedding.dtype

    def template_coverage(self, template_anno: torch.Tensor) -> torch.Tensor:
        """Fraction of each template cell covered by the target box: B×tz².

        ``template_anno`` is B×4 (x1, y1, w, h) normalised by the template size.
        """
        anno = template_anno.to(self.cell_boxes)
        box = torch.cat([anno[:, :2], anno[:, :2] + anno[:, 2:]], dim=1).clamp(0.0, 1.0)
        cells = self.cell_boxes
        low = torch.maximum(cells[None, :, :2], box[:, None, :2])
        high = torch.minimum(cells[None, :, 2:], box[:, None, 2:])
        inter = (high - low).clamp(min=0.0).prod(dim=-1)
        cell_area = (cells[:, 2:] - cells[:, :2]).prod(dim=-1)
        return inter / cell_area

    def template_position(self, template_anno: torch.Tensor) -> torch.Tensor:
        """Template position embedding ``pos_fc(s, cx, cy) * 2 - 1``: B×tz²×width."""
        s = (self.template_coverage(template_anno) + 1.0) / 2.0
        centres = self.cell_centres.expand(s.shape[0], -1, -1)
        return self.pos_fc(torch.cat([s.unsqueeze(-1), centres], dim=-1)) * 2.0 - 1.0

    def foveal_position(self, template_pos: torch.Tensor) -> torch.Tensor:
        """Foveal position embedding from the template one (B×tz²×width): B×fz²×width."""
        batch, _, width = template_pos.shape
        grid = template_pos.reshape(batch, self.template_grid, self.template_grid, width)
        w, fz = self.foveal_window, self.foveal_grid
        mean = (grid[:, w:w + fz, w:w + fz] + grid[:, w - 1:w - 1 + fz, w - 1:w - 1 + fz]) / 2
        return mean.reshape(batch, fz * fz, width)

    def _check_size(self, image: torch.Tensor, size: int, what: str) -> None:
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[-2:] != (size, size):
            raise ValueError(
                f'{what} must be B×3×{size}×{size} for config {self.config.name!r}, '
                f'got {tuple(image.shape)}')

    def embed_template(self, template: torch.Tensor, template_anno: torch.Tensor
                       ) -> torch.Tensor:
        """Template and foveal tokens with their position embeddings: B×(tz²+fz²)×width."""
        self._check_size(template, self.config.template_size, 'template')
        visual, dtype = self.visual, self.token_dtype
        pos = self.template_position(template_anno).to(dtype)
        lo, hi = self.foveal_pad, self.foveal_pad + self.config.foveal_size
        tokens = visual.patch_embed(template).to(dtype) + pos
        foveal = visual.patch_embed(template[:, :, lo:hi, lo:hi]).to(dtype)
        return torch.cat([tokens, foveal + self.foveal_position(pos)], dim=1)

    def search_position(self) -> torch.Tensor:
        """Return CLIP's patch position embedding resized to the search grid: sz²×width."""
        pos = self.visual.positional_embedding[1:]
        clip_grid, sz = self.visual.grid, self.search_grid
        if clip_grid == sz:
            return pos
        grid = pos.reshape(1, clip_grid, clip_grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(sz, sz), mode='bilinear', align_corners=False)
        return grid.flatten(2).transpose(1, 2)[0]

    def forward_tokens(self, template_tokens: torch.Tensor, search: torch.Tensor
                       ) -> torch.Tensor:
        """Run the encoder on cached template tokens and a search image.

        Returns B×(tz²+1+sz²)×width laid out [template | CLS | search]; CLS is at index tz².
        """
        self._check_size(search, self.config.search_size, 'search')
        num_template = self.template_grid ** 2
        if template_tokens.shape[1:] != (self.num_template_tokens, self.config.width):
            raise ValueError(
                f'template_tokens must be B×{self.num_template_tokens}×{self.config.width}, '
                f'got {tuple(template_tokens.shape)}')
        if template_tokens.shape[0] != search.shape[0]:
            raise ValueError(
                f'batch mismatch: {template_tokens.shape[0]} templates, '
                f'{search.shape[0]} search images')
        visual, dtype = self.visual, self.token_dtype
        tokens = visual.patch_embed(search).to(dtype) + self.search_position()
        cls = (visual.class_embedding + visual.positional_embedding[0]).to(dtype)
        cls = cls.expand(tokens.shape[0], 1, -1)
        template_tokens = template_tokens.to(dtype)
        x = torch.cat([template_tokens[:, :num_template], cls, tokens,
                       template_tokens[:, num_template:]], dim=1)
        return visual.encode_tokens(x)[:, :self.num_output_tokens]

    def forward(self, template: torch.Tensor, search: torch.Tensor,
                template_anno: torch.Tensor) -> torch.Tensor:
        """Full backbone: B×(tz²+1+sz²)×width (the official ``CLIPVIT`` output)."""
        return self.forward_tokens(self.embed_template(template, template_anno), search)
