"""The ten tracking-challenge classes: the single source of truth.

Ids equal the constants of ``simtrack_ros_interfaces/msg/TrackingChallenge``. Everything
else (model heads, checkpoints, annotation files, messages) identifies classes by **name**
and imports them from here.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

#: Class names in id order (id = index). Matches the message constants.
CHALLENGE_NAMES: Tuple[str, ...] = (
    'motion_blur',
    'illumination_change',
    'scale_variation',
    'variance_in_appearance',
    'partial_visibility',
    'occlusion',
    'background_clutter',
    'low_resolution',
    'low_contrast_object',
    'normal',
)

#: Human-readable labels, for debug images and reports.
CHALLENGE_LABELS: Dict[str, str] = {
    'motion_blur': 'Motion blur',
    'illumination_change': 'Illumination change',
    'scale_variation': 'Scale variation',
    'variance_in_appearance': 'Variance in appearance',
    'partial_visibility': 'Partial visibility',
    'occlusion': 'Occlusion',
    'background_clutter': 'Background clutter',
    'low_resolution': 'Low resolution',
    'low_contrast_object': 'Low contrast object',
    'normal': 'Normal',
}

NUM_CHALLENGES = len(CHALLENGE_NAMES)
NORMAL = 'normal'
#: Value of ``TrackingChallenge.challenge`` when there is no meaningful answer.
UNKNOWN_ID = 255

#: Keys used by the annotation files of the design guide, mapped to our names.
ANNOTATION_KEYS: Dict[str, str] = {
    'motion_blur': 'motion_blur',
    'illu_change': 'illumination_change',
    'variance_appear': 'variance_in_appearance',
    'partial_visibility': 'partial_visibility',
    'background_clutter': 'background_clutter',
    'occlusion': 'occlusion',
    'scale_variation': 'scale_variation',
    'low_res': 'low_resolution',
    'low_contrast': 'low_contrast_object',
    'normal': 'normal',
}

#: Default priority for the single-label rule: the guide's VLM list, then its CV list,
#: then normal. Explicit, never the key order of a JSON file.
DEFAULT_PRIORITY: Tuple[str, ...] = (
    'motion_blur',
    'illumination_change',
    'variance_in_appearance',
    'partial_visibility',
    'background_clutter',
    'occlusion',
    'scale_variation',
    'low_resolution',
    'low_contrast_object',
    'normal',
)


def challenge_id(name: str) -> int:
    """Return the message id of a class name (or annotation key)."""
    canonical = canonical_name(name)
    return CHALLENGE_NAMES.index(canonical)


def canonical_name(name: str) -> str:
    """Map a class name or annotation key to its canonical name; ValueError if unknown."""
    if name in CHALLENGE_NAMES:
        return name
    if name in ANNOTATION_KEYS:
        return ANNOTATION_KEYS[name]
    raise ValueError(f'unknown challenge class {name!r}; known: {", ".join(CHALLENGE_NAMES)}')


def single_label(flags: Mapping[str, bool], priority: Sequence[str] = DEFAULT_PRIORITY) -> str:
    """Pick one class from multi-label flags by an explicit priority order.

    ``flags`` maps class names or annotation keys to truthy values; 'normal' when none is set.
    """
    active = {canonical_name(key) for key, value in flags.items() if value}
    for name in priority:
        if canonical_name(name) in active:
            return canonical_name(name)
    return NORMAL


def reorder_index(source: Sequence[str], target: Sequence[str] = CHALLENGE_NAMES) -> List[int]:
    """Return the indices into ``source`` that put its classes in ``target`` order.

    Raises ValueError naming the difference when the two lists are not the same set.
    """
    src = [canonical_name(n) for n in source]
    tgt = [canonical_name(n) for n in target]
    missing = [n for n in tgt if n not in src]
    extra = [n for n in src if n not in tgt]
    if missing or extra or len(src) != len(set(src)):
        raise ValueError(
            f'class lists do not match: missing {missing}, unexpected {extra}, '
            f'given {list(source)}')
    return [src.index(n) for n in tgt]


def validate_names(names: Iterable[str]) -> Tuple[str, ...]:
    """Canonicalise a class-name list, rejecting unknown names and duplicates."""
    out = tuple(canonical_name(n) for n in names)
    if len(set(out)) != len(out):
        raise ValueError(f'duplicate class names in {list(names)}')
    return out


def top_class(probabilities: Sequence[float], names: Sequence[str]) -> Optional[Tuple[str, float]]:
    """Return (name, probability) of the most likely class, or None for no probabilities."""
    if len(probabilities) == 0:
        return None
    best = max(range(len(probabilities)), key=lambda i: probabilities[i])
    return names[best], float(probabilities[best])
