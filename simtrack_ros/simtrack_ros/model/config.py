"""Model configurations by name: the official B/16, L/14, and a small one for tests and demos."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Tuple

from simtrack_ros.challenges import CHALLENGE_NAMES, validate_names


#: Test-time settings that older checkpoints stored in the model config; ignored when read.
TEST_TIME_KEYS = ('template_factor', 'search_factor')


@dataclass(frozen=True)
class SimTrackConfig:
    """Every size of the dual-head SimTrack model.

    Defaults are the official SimTrack-B/16 (``experiments/simtrack/baseline.yaml``).
    """

    name: str = 'simtrack-b16'
    # CLIP ViT visual encoder
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    clip_input_size: int = 224      # size CLIP's positional embedding was made for
    clip_proj_dim: int = 512        # visual.proj (kept for checkpoint compatibility; unused)
    # SimTrack token scheme
    template_size: int = 112
    search_size: int = 224
    foveal_size: int = 64
    # neck and heads
    hidden_dim: int = 256           # bottleneck output = corner head input/channel
    cls_hidden_dim: int = 512       # classification projection width
    cls_dropout: float = 0.1
    class_names: Tuple[str, ...] = CHALLENGE_NAMES
    multi_label: bool = False       # False: softmax over classes; True: per-class sigmoid
    fusion: bool = False            # add fusion_layer(cls features) to the box features

    def __post_init__(self) -> None:
        object.__setattr__(self, 'class_names', validate_names(self.class_names))
        for size_name in ('template_size', 'search_size', 'foveal_size', 'clip_input_size'):
            size = getattr(self, size_name)
            if size <= 0 or size % self.patch_size:
                raise ValueError(
                    f'{self.name}: {size_name}={size} must be a positive multiple of '
                    f'patch_size={self.patch_size}')
        if self.foveal_size > self.template_size:
            raise ValueError(f'{self.name}: foveal_size must not exceed template_size')
        if self.width % self.heads:
            raise ValueError(
                f'{self.name}: width {self.width} not divisible by heads {self.heads}')

    @property
    def template_grid(self) -> int:
        """Template tokens per side (7 for B/16)."""
        return self.template_size // self.patch_size

    @property
    def search_grid(self) -> int:
        """Search tokens per side (14 for B/16) = corner-head feature size."""
        return self.search_size // self.patch_size

    @property
    def foveal_grid(self) -> int:
        """Foveal tokens per side (4 for B/16)."""
        return self.foveal_size // self.patch_size

    @property
    def num_classes(self) -> int:
        """Number of challenge classes of the classification head."""
        return len(self.class_names)

    def to_dict(self) -> Dict[str, Any]:
        """Plain-data form stored in checkpoints."""
        data = dataclasses.asdict(self)
        data['class_names'] = list(self.class_names)
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> 'SimTrackConfig':
        """Inverse of :meth:`to_dict`; unknown keys are an error.

        Keys of :data:`TEST_TIME_KEYS` (crop factors, which checkpoints of earlier versions
        stored here) are dropped: they are tracker settings (``TrackerOptions``).
        """
        values = {key: value for key, value in data.items() if key not in TEST_TIME_KEYS}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown model config keys {unknown}')
        if 'class_names' in values:
            values['class_names'] = tuple(values['class_names'])
        return cls(**values)

    def replace(self, **changes: Any) -> 'SimTrackConfig':
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)


_CONFIGS: Dict[str, SimTrackConfig] = {
    'simtrack-b16': SimTrackConfig(),
    # CLIP ViT-L/14; the official repo ships no L/14 config: the foveal window is 4 tokens of 14.
    'simtrack-l14': SimTrackConfig(
        name='simtrack-l14', patch_size=14, width=1024, layers=24, heads=16,
        clip_proj_dim=768, template_size=112, search_size=224, foveal_size=56),
    # Small model for tests and the CPU demo (same token scheme, far fewer FLOPs).
    'tiny': SimTrackConfig(
        name='tiny', width=192, layers=4, heads=3, clip_proj_dim=128, hidden_dim=64,
        cls_hidden_dim=128),
    # The demo weights' model: tiny's encoder on 64 px templates and 128 px search crops
    # (about 4x fewer tokens than tiny; trained from scratch on synthetic sea scenes).
    'small': SimTrackConfig(
        name='small', width=192, layers=4, heads=3, clip_proj_dim=128, hidden_dim=64,
        cls_hidden_dim=128, template_size=64, search_size=128, foveal_size=32),
}

CONFIG_NAMES: Tuple[str, ...] = tuple(_CONFIGS)


def get_config(name: str, **overrides: Any) -> SimTrackConfig:
    """Return the named configuration, optionally with fields overridden."""
    try:
        config = _CONFIGS[name]
    except KeyError:
        raise ValueError(
            f'unknown model config {name!r}; choose one of {", ".join(CONFIG_NAMES)}') from None
    return config.replace(**overrides) if overrides else config


__all__ = ['SimTrackConfig', 'get_config', 'CONFIG_NAMES']
