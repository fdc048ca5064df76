"""Plans of synthetic sequences: which challenges are staged when, and every per-frame parameter.

A plan is drawn from a seed and a list of *variants*, each a way of staging one challenge
(:data:`VARIANTS`). It fixes the weather, the camera boat's motion, the target's path, the other
vessels, the lighting and the frame-by-frame schedule, as arrays with one value per frame; the
renderer (:mod:`simtrack_ros.data.synthetic_scene`) draws frame ``i`` from it and measures the
labels on what it drew. The first frame (the tracker's template) is never inside an event's
window; weather variants (haze, fog, dusk, whitecaps, harbour, far, downsampled) hold all along.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from simtrack_ros.challenges import canonical_name, CHALLENGE_NAMES, NORMAL
from simtrack_ros.data.synthetic_sea import random_waves, SeaPalette, SeaView, WaveField
from simtrack_ros.data.synthetic_vessels import project_vessel, random_vessel, VesselModel

#: Ways of staging each class (variant names are unique across classes).
VARIANTS: Dict[str, Tuple[str, ...]] = {
    'motion_blur': ('camera_shake', 'fast_target'),
    'illumination_change': ('cloud', 'glare'),
    'scale_variation': ('approach', 'recede'),
    'variance_in_appearance': ('turn',),
    'partial_visibility': ('leave_frame',),
    'occlusion': ('occluding_vessel', 'wave_crest'),
    'background_clutter': ('similar_vessels', 'whitecaps', 'harbour'),
    'low_resolution': ('far', 'downsampled'),
    'low_contrast_object': ('haze', 'fog', 'dusk'),
    NORMAL: ('calm',),
}
#: The class each variant stages.
VARIANT_CLASS: Dict[str, str] = {v: name for name, vs in VARIANTS.items() for v in vs}
#: Variants that hold for the whole sequence.
WHOLE_SEQUENCE = ('haze', 'fog', 'dusk', 'whitecaps', 'harbour', 'far', 'downsampled')

_SEAS = (((25, 65, 95), (110, 140, 160)), ((40, 70, 65), (120, 140, 135)),
         ((15, 35, 60), (90, 110, 130)), ((50, 60, 70), (130, 140, 150)))
_BUILDING_COLOURS = ((150, 145, 140), (190, 180, 160), (120, 70, 55), (200, 200, 195),
                     (90, 100, 115), (170, 120, 60))
_OCCLUDER_KINDS = ('ferry', 'cargo', 'tug', 'patrol', 'motorboat')


def parse_mix(spec: str) -> Dict[str, float]:
    """Weights per variant from ``'occlusion,fog'`` or ``'occlusion=2,fog=0.5'``.

    A class name (or annotation key) shares its weight among its variants; 'all' names every
    class. ValueError for unknown names or non-positive weights.
    """
    weights: Dict[str, float] = {}
    for item in (part.strip() for part in spec.split(',')):
        if not item:
            continue
        name, _, value = item.partition('=')
        name = name.strip()
        try:
            weight = float(value) if value else 1.0
        except ValueError:
            raise ValueError(f'challenge mix: weight of {name!r} is not a number: '
                             f'{value!r}') from None
        if not weight > 0 or not math.isfinite(weight):
            raise ValueError(f'challenge mix: weight of {name!r} must be > 0, got {value}')
        if name == 'all':
            names = [(v, weight / len(vs)) for vs in VARIANTS.values() for v in vs]
        elif name in VARIANT_CLASS:
            names = [(name, weight)]
        else:
            try:
                variants = VARIANTS[canonical_name(name)]
            except ValueError:
                raise ValueError(
                    f'challenge mix: unknown name {name!r}; use a class '
                    f'({", ".join(CHALLENGE_NAMES)}), a variant '
                    f'({", ".join(VARIANT_CLASS)}) or all') from None
            names = [(v, weight / len(variants)) for v in variants]
        for variant, share in names:
            weights[variant] = weights.get(variant, 0.0) + share
    if not weights:
        raise ValueError('challenge mix is empty')
    return weights


def choose_variants(rng: np.random.Generator, weights: Mapping[str, float],
                    max_count: int) -> Tuple[str, ...]:
    """Draw 1..max_count variants of different classes by weight ('calm' only alone)."""
    count = int(rng.integers(1, max(1, max_count) + 1))
    names = list(weights)
    chosen: List[str] = []
    while len(chosen) < count:
        allowed = [n for n in names if VARIANT_CLASS[n] not in {VARIANT_CLASS[c] for c in chosen}
                   and (n != 'calm' or not chosen)]
        if not allowed or 'calm' in chosen:
            break
        p = np.array([weights[n] for n in allowed])
        chosen.append(allowed[int(rng.choice(len(allowed), p=p / p.sum()))])
    return tuple(chosen)


@dataclass(frozen=True)
class Window:
    """Frames ``start`` to ``stop`` (exclusive) in which ``variant`` is staged."""

    variant: str
    start: int
    stop: int


@dataclass
class Track:
    """A vessel's path, one value per frame.

    Scene column before the camera's pan, distance (world units), yaw (0 faces right, pi/2
    away), bob (fraction of its length in pixels) and wake length (vessel lengths).
    """

    model: VesselModel
    u: np.ndarray
    distance: np.ndarray
    yaw: np.ndarray
    bob: np.ndarray
    wake: np.ndarray


@dataclass
class Harbour:
    """A quay ``distance`` units away with buildings and cranes.

    ``blocks`` are rectangles in world units ``(lateral left, lateral right, bottom, top)``.
    """

    distance: float
    blocks: np.ndarray
    colours: Tuple[Tuple[float, float, float], ...]


@dataclass
class Plan:
    """Everything a sequence shows; arrays hold one value (or row) per frame."""

    seed: int
    width: int
    height: int
    fps: float
    windows: Tuple[Window, ...]
    palette: SeaPalette
    waves: WaveField
    foam_level: float
    sun: np.ndarray
    light: float                 # vessel shading (dusk < 1)
    exposure: float              # shutter open, fraction of the frame interval
    downsample: float            # the camera's true resolution is 1 / downsample
    eye: float
    horizon: np.ndarray
    roll: np.ndarray
    pan: np.ndarray
    target: Track
    others: List[Track]
    crest: np.ndarray            # wave crest height over the target, fraction of its height
    shadow: Tuple[float, float, float]   # cloud: depth (+ darker), softness px, direction
    shadow_edges: np.ndarray     # N x 2: leading and trailing edge columns of the shadow
    glare: np.ndarray            # N x 4: offset from the target (x, y px), radius px, strength
    harbour: Optional[Harbour] = None

    @property
    def frames(self) -> int:
        return len(self.horizon)

    def view(self, index: int) -> SeaView:
        return SeaView(self.width, self.height, float(self.horizon[index]), self.eye,
                       float(self.roll[index]), float(self.pan[index]))

    def summary(self) -> Dict[str, object]:
        """JSON-ready description (what was staged; the labels are measured per frame)."""
        return {
            'seed': self.seed, 'width': self.width, 'height': self.height, 'fps': self.fps,
            'frames': self.frames,
            'staged': [{'variant': w.variant, 'class': VARIANT_CLASS[w.variant],
                        'start': w.start, 'stop': w.stop} for w in self.windows],
            'target': {'kind': self.target.model.kind,
                       'length': round(self.target.model.length, 4)},
            'others': [t.model.kind for t in self.others],
            'downsample': round(self.downsample, 4), 'fog': round(self.palette.fog, 4),
        }


def ramp(frames: int, start: int, stop: int) -> np.ndarray:
    """0 before ``start``, a smoothstep up to 1 at ``stop``, 1 after."""
    x = np.clip((np.arange(frames) - start) / max(stop - start, 1), 0.0, 1.0)
    return x * x * (3 - 2 * x)


def bump(frames: int, start: int, stop: int, rise: float = 0.3) -> np.ndarray:
    """0 outside the window; up over its first ``rise`` share, 1, down over the last."""
    edge = max(int(round(rise * (stop - start))), 1)
    return ramp(frames, start, start + edge) - ramp(frames, stop - edge, stop)


def _window(rng: np.random.Generator, frames: int, low: float, high: float) -> Tuple[int, int]:
    """Draw an event window that leaves frame 0 (the template) alone."""
    if frames < 3:
        return 1, max(frames, 1)
    length = int(np.clip(round(rng.uniform(low, high) * frames), 2, frames - 1))
    first = min(max(1, int(0.12 * frames)), frames - length)
    start = int(rng.integers(first, frames - length + 1))
    return start, start + length


def _box_shape(model: VesselModel, yaw: float) -> Tuple[float, float]:
    """Box width and height of the vessel per pixel of length (seen from 10 degrees up)."""
    polygons, _ = project_vessel(model, yaw, math.radians(10), 1.0, (0.0, 0.0),
                                 np.array([0.0, 0.0, 1.0]))
    points = np.concatenate(polygons)
    return tuple(float(v) for v in np.ptp(points, axis=0))


class _Builder:
    """Draws a plan section by section; each section applies the variants that concern it."""

    def __init__(self, seed: int, width: int, height: int, frames: int, fps: float,
                 variants: Sequence[str]):
        self.rng = np.random.default_rng(seed)
        self.seed, self.width, self.height, self.n, self.fps = seed, width, height, frames, fps
        self.variants = tuple(variants)
        self.windows: Dict[str, Tuple[int, int]] = {}
        for variant in self.variants:
            if variant in WHOLE_SEQUENCE or variant == 'calm':
                self.windows[variant] = (0, frames)
            else:
                low, high = {'leave_frame': (0.5, 0.7), 'fast_target': (0.15, 0.25),
                             'turn': (0.3, 0.5), 'approach': (0.5, 0.75),
                             'recede': (0.5, 0.75)}.get(variant, (0.3, 0.5))
                self.windows[variant] = _window(self.rng, frames, low, high)
        self.t = np.arange(frames) / fps
        self.focal = width / 2.0

    def has(self, variant: str) -> bool:
        return variant in self.variants

    def world(self) -> None:
        rng, h = self.rng, self.height
        near, far = _SEAS[int(rng.integers(len(_SEAS)))]
        sky = float(rng.uniform(0.85, 1.08))
        palette = SeaPalette(
            sky_top=tuple(c * sky for c in (70.0, 130.0, 190.0)),
            sky_horizon=tuple(min(255.0, c * sky) for c in (200.0, 220.0, 235.0)),
            sea_near=near, sea_far=far, fog=float(rng.uniform(0.0, 0.15)),
            fog_colour=(200.0, 210.0, 220.0))
        self.light = 1.0
        chop, self.foam_level = float(rng.uniform(0.8, 1.2)), float(rng.uniform(0.85, 1.0))
        if self.has('whitecaps'):
            chop, self.foam_level = float(rng.uniform(1.5, 1.9)), float(rng.uniform(0.25, 0.4))
        self.palette = palette
        self.waves = random_waves(rng, chop)
        self.eye = float(rng.uniform(0.35, 0.65)) * h
        horizon = float(rng.uniform(0.33, 0.45)) * h
        if self.has('harbour'):
            self.eye = float(rng.uniform(0.12, 0.22)) * h
            horizon = float(rng.uniform(0.42, 0.5)) * h
        pitch, roll = float(rng.uniform(0.004, 0.015)) * h, math.radians(rng.uniform(0.5, 2.5))
        phase = rng.uniform(0, 2 * np.pi, 2)
        self.horizon = horizon + pitch * np.sin(2 * np.pi * self.t / rng.uniform(3, 6) + phase[0])
        self.roll = roll * np.sin(2 * np.pi * self.t / rng.uniform(4, 8) + phase[1])
        self.pan = np.zeros(self.n)
        sun = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.4), rng.uniform(0.5, 1.0)])
        self.sun = sun / np.linalg.norm(sun)
        self.exposure = float(rng.uniform(0.5, 1.0))
        self.downsample = 1.0

    def _distance(self, model: VesselModel, pixels: float) -> float:
        """Distance at which ``model`` is ``pixels`` long, kept on the visible water."""
        nearest = self.eye / (0.93 * self.height - float(self.horizon.max()))
        return max(self.focal * model.length / pixels, nearest)

    def target(self) -> None:
        rng, w = self.rng, self.width
        kinds, weights = ['motorboat', 'sailboat', 'tug', 'usv', 'patrol', 'ferry', 'cargo'], \
            [0.25, 0.15, 0.12, 0.12, 0.14, 0.12, 0.1]
        if self.has('whitecaps') or self.has('dusk'):   # small and near: seen against water
            kinds, weights = kinds[:5], [0.2] * 5
        model = random_vessel(rng, str(rng.choice(kinds, p=weights)))
        facing = 1 if rng.random() < 0.5 else -1
        yaw0 = float(rng.uniform(-0.5, 0.5))
        yaw0 = yaw0 if facing > 0 else math.pi - yaw0
        box_w, box_h = _box_shape(model, yaw0)
        pixels = float(rng.uniform(0.08, 0.25)) * w
        pixels = max(pixels, math.sqrt(700.0 / (box_w * box_h)))
        if self.has('approach'):
            pixels = float(rng.uniform(0.06, 0.11)) * w
        elif self.has('recede'):
            pixels = float(rng.uniform(0.2, 0.32)) * w
        elif self.has('harbour'):
            pixels = float(rng.uniform(0.08, 0.16)) * w
        elif self.has('whitecaps'):
            pixels = self.focal * model.length / float(rng.uniform(0.9, 1.5))
        elif self.has('dusk'):
            pixels = max(pixels, self.focal * model.length / 2.5)
        if self.has('far'):
            pixels = math.sqrt(float(rng.uniform(120, 330)) / (box_w * box_h))
        distance = np.full(self.n, self._distance(model, pixels))
        if self.has('approach'):        # far enough to come three times nearer
            distance = np.maximum(distance, 3.6 * self._distance(model, 0.6 * w))
        yaw = np.full(self.n, yaw0)
        speed = np.full(self.n, float(rng.uniform(0.2, 1.5)) * w / 640)
        if self.has('turn'):
            start, stop = self.windows['turn']
            turn = float(rng.uniform(1.2, math.pi)) * (1 if rng.random() < 0.5 else -1)
            yaw = yaw + turn * ramp(self.n, start, stop)
        if self.has('fast_target'):
            start, stop = self.windows['fast_target']
            dash = float(rng.uniform(0.025, 0.04)) * w
            stop = min(stop, start + max(int(0.6 * w / dash / 0.8), 2))
            self.windows['fast_target'] = (start, stop)
            speed = speed + dash * bump(self.n, start, stop, rise=0.15)
        for variant, factor in (('approach', 1 / rng.uniform(2.4, 3.5)),
                                ('recede', rng.uniform(2.2, 3.2))):
            if self.has(variant):
                start, stop = self.windows[variant]
                lowest = self._distance(model, 0.6 * w) / distance[0]
                factor = max(float(factor), lowest)
                distance = distance * (1 + (factor - 1) * ramp(self.n, start, stop))
        length_px = self.focal * model.length / distance
        u = np.concatenate([[0.0], np.cumsum(speed * np.cos(yaw))[:-1]])
        # Centre the path, keeping the whole vessel in view where it fits.
        half = 0.5 * length_px * box_w
        low, high = float(np.min(u - half)), float(np.max(u + half))
        slack = max(0.0, (w * 0.96 - (high - low)) / 2)
        offset = float(rng.uniform(-slack, slack))
        if self.has('leave_frame'):     # start on one side: a short pan takes it out
            offset = math.copysign(slack, offset)
        u = u + (w / 2 - (low + high) / 2) + offset
        world_speed = speed * distance / self.focal * self.fps / model.length
        self.target_track = Track(
            model, u, distance, yaw,
            bob=0.02 * np.sin(2 * np.pi * self.t / rng.uniform(1.8, 3.0) + rng.uniform(0, 6)),
            wake=np.clip(0.6 * world_speed, 0.0, 1.5))
        self.target_box = (box_w, box_h)
        if self.has('downsampled'):
            area = float(np.min(length_px)) ** 2 * box_w * box_h
            self.downsample = max(float(rng.uniform(2.5, 4.0)),
                                  math.sqrt(area / float(rng.uniform(150, 350))))

    def view(self) -> None:
        rng, w, target = self.rng, self.width, self.target_track
        length_px = self.focal * target.model.length / target.distance
        if self.has('leave_frame'):
            start, stop = self.windows['leave_frame']
            middle = (start + stop) // 2
            box_w = length_px[middle] * self.target_box[0]
            outside = float(rng.uniform(0.25, 0.75))
            if target.u[middle] >= w / 2:
                goal = w + box_w * (outside - 0.5)
            else:
                goal = -box_w * (outside - 0.5)
            shift = goal - target.u[middle]
            rise = min(0.45, abs(shift) / (0.008 * w) / max(stop - start, 1))
            self.pan = self.pan + shift * bump(self.n, start, stop, rise=max(rise, 0.1))
        if self.has('camera_shake'):
            start, stop = self.windows['camera_shake']
            envelope = bump(self.n, start, stop, rise=0.1)
            speed = float(rng.uniform(0.025, 0.04)) * w          # pixels per frame
            offsets = []
            for _ in range(3):
                # Vibration of 2-4 Hz: a sum of three sinusoids of random phase.
                hertz = rng.uniform(2.0, 4.0, 3)
                phase = rng.uniform(0, 2 * np.pi, 3)
                wave = np.sin(2 * np.pi * hertz[:, None] * self.t + phase[:, None]).sum(axis=0)
                offsets.append(wave * speed * self.fps / (2 * np.pi * float(hertz.mean()))
                               / math.sqrt(3))
            self.pan = self.pan + offsets[0] * envelope
            self.horizon = self.horizon + 0.7 * offsets[1] * envelope
            self.roll = self.roll + math.radians(1.5) * offsets[2] / (speed * self.fps) * envelope
            self.exposure = float(rng.uniform(0.8, 1.0))

    def _pixels(self, track: Track) -> np.ndarray:
        return self.focal * track.model.length / track.distance

    def company(self) -> None:
        """Other vessels: background traffic, sister ships, an occluder; and the wave crest."""
        rng, n, target = self.rng, self.n, self.target_track
        self.others: List[Track] = []
        length_t = self._pixels(target)
        if self.has('occluding_vessel'):
            self.others.append(self._occluder(length_t))
        if self.has('similar_vessels'):
            start, stop = self.windows['similar_vessels']
            closeness = bump(n, start, stop, rise=0.25)
            for index in range(int(rng.integers(2, 4))):
                side = 1 if index % 2 == 0 else -1
                near = side * float(rng.uniform(0.75, 1.0)) * (1 + index // 2)
                offset = near + (side * 4.0 - near) * (1 - closeness)
                model = target.model.resized(target.model.length * rng.uniform(0.85, 1.15))
                distance = target.distance * float(rng.uniform(1.0, 1.25))
                u = target.u + offset * length_t
                yaw = target.yaw + float(rng.uniform(-0.3, 0.3))
                self.others.append(self._track(model, u, distance, yaw, np.gradient(u)
                                               if n > 1 else np.zeros(n)))
        for _ in range(int(rng.integers(0, 3))):
            self._background_vessel()
        self.crest = np.zeros(n)
        if self.has('wave_crest'):
            start, stop = self.windows['wave_crest']
            self.crest = float(rng.uniform(0.4, 1.2)) * bump(n, start, stop, rise=0.3)
        self.harbour = self._harbour() if self.has('harbour') else None

    def _occluder(self, length_t: np.ndarray) -> Track:
        """Plan a nearer vessel crossing in front of the target mid-window.

        Its distance is solved so that its top reaches ``reach`` of the way up the target
        (its waterline is lower in the image the nearer it is); a taller kind is tried when
        the first cannot reach.
        """
        rng, n, target = self.rng, self.n, self.target_track
        start, stop = self.windows['occluding_vessel']
        middle = (start + stop) // 2
        distance_t = float(target.distance[middle])
        tall_t = self.focal * target.model.length / distance_t * self.target_box[1]
        reach = float(rng.uniform(0.6, 1.3))
        # Row of the occluder's top minus the horizon: (eye - height * focal * length) / d;
        # it must not be below eye / distance_t - reach * tall_t.
        goal = self.eye / distance_t - reach * tall_t
        kinds = list(_OCCLUDER_KINDS)
        rng.shuffle(kinds)
        for kind in kinds:
            model = random_vessel(rng, kind)
            _, height = _box_shape(model, 0.0)
            lift = self.eye - height * self.focal * model.length
            if lift <= 0 or goal > 0 and lift / goal < 0.95 * distance_t:
                break
        low = 0.5 * distance_t if lift <= 0 else max(lift / goal, 0.5 * distance_t) \
            if goal > 0 else 0.95 * distance_t
        distance = float(rng.uniform(min(low, 0.95 * distance_t), 0.95 * distance_t))
        model = model.resized(min(model.length, 1.2 * self.width * distance / self.focal))
        length_o = self.focal * model.length / distance
        direction = 1 if rng.random() < 0.5 else -1
        span = length_o + length_t[middle]
        relative = max(min(1.15 * span / max(stop - start, 1),
                           0.008 * self.width),    # a ship's pace: little motion blur
                       0.6 * span / max(middle, 1))  # but clear of the target in frame 0
        u = target.u + direction * relative * (np.arange(n) - middle)
        velocity = np.gradient(u) if n > 1 else np.zeros(n)
        yaw = np.where(velocity >= 0, 0.0, math.pi) + rng.uniform(-0.3, 0.3)
        return self._track(model, u, np.full(n, distance), yaw, velocity)

    def _track(self, model: VesselModel, u: np.ndarray, distance: np.ndarray, yaw: np.ndarray,
               velocity: np.ndarray) -> Track:
        speed = np.abs(velocity) * distance / self.focal * self.fps / model.length
        bob = 0.02 * np.sin(2 * np.pi * self.t / self.rng.uniform(1.8, 3.0)
                            + self.rng.uniform(0, 6))
        return Track(model, u, distance, np.asarray(yaw, np.float64) * np.ones(self.n), bob,
                     np.clip(0.6 * speed, 0.0, 1.5))

    def _background_vessel(self) -> None:
        """Add a vessel well away from the target (outside its surroundings) if one fits."""
        rng, target, w = self.rng, self.target_track, self.width
        model = random_vessel(rng)
        distance = float(target.distance[0] * rng.uniform(1.5, 4.0))
        length = self.focal * model.length / distance
        if length > 0.5 * w:
            return
        drift = float(rng.uniform(-1.0, 1.0)) * w / 640
        clearance = self._pixels(target) * 1.5 + length
        for _ in range(8):
            u = float(rng.uniform(0, w)) + drift * np.arange(self.n)
            if np.all(np.abs(u - target.u) > clearance):
                yaw = (0.0 if drift >= 0 else math.pi) + float(rng.uniform(-0.4, 0.4))
                self.others.append(self._track(model, u, np.full(self.n, distance),
                                               np.full(self.n, yaw), np.full(self.n, drift)))
                return

    def _harbour(self) -> Harbour:
        rng, target = self.rng, self.target_track
        distance = float(target.distance.min() * rng.uniform(1.3, 2.2))
        reach = (self.width * 0.8 + np.abs(self.pan).max()) * distance / self.focal
        blocks, colours = [(-reach, reach, 0.0, 0.04)], [(70.0, 70.0, 75.0)]
        x = -reach
        while x < reach:
            width = float(rng.uniform(0.2, 0.9))
            if rng.random() < 0.15:        # a crane: tower and jib
                top = float(rng.uniform(0.8, 1.4))
                blocks += [(x, x + 0.05, 0.0, top), (x - 0.4, x + 0.5, top - 0.06, top)]
                colours += [(200.0, 120.0, 40.0)] * 2
            else:
                blocks.append((x, x + width, 0.0, float(rng.uniform(0.15, 0.7))))
                colours.append(_BUILDING_COLOURS[int(rng.integers(len(_BUILDING_COLOURS)))])
            x += width + float(rng.uniform(0.0, 0.15))
        return Harbour(distance, np.array(blocks), tuple(colours))

    def weather(self) -> None:
        rng, target = self.rng, self.target_track
        palette = self.palette
        if self.has('haze'):
            palette = SeaPalette(**{**palette.__dict__, 'fog': float(rng.uniform(0.8, 0.88)),
                                    'fog_colour': (215.0, 205.0, 185.0),
                                    'fog_distance': float(target.distance.min()
                                                          * rng.uniform(0.25, 0.4))})
        if self.has('fog'):
            grey = float(rng.uniform(185, 215))
            palette = SeaPalette(**{**palette.__dict__, 'fog': float(rng.uniform(0.88, 0.96)),
                                    'fog_colour': (grey, grey + 3, grey + 6),
                                    'fog_distance': float(target.distance.min()
                                                          * rng.uniform(0.2, 0.35))})
        if self.has('dusk'):
            palette = SeaPalette(sky_top=(25.0, 30.0, 55.0), sky_horizon=(80.0, 62.0, 72.0),
                                 sea_near=(10.0, 14.0, 25.0), sea_far=(50.0, 46.0, 60.0),
                                 foam=(90.0, 90.0, 95.0), fog_colour=(40.0, 38.0, 50.0),
                                 fog=float(rng.uniform(0.45, 0.6)),
                                 fog_distance=float(target.distance.min()
                                                    * rng.uniform(0.5, 0.8)))
            self.light = float(rng.uniform(0.08, 0.13))
        self.palette = palette

    def lighting(self) -> None:
        rng, n, w = self.rng, self.n, self.width
        self.shadow = (0.0, 1.0, 1.0)
        self.shadow_edges = np.zeros((n, 2))
        if self.has('cloud'):
            start, stop = self.windows['cloud']
            depth = float(rng.uniform(0.4, 0.6))          # darker; or brighter: sun comes out
            if rng.random() >= 0.7:
                depth = -float(rng.uniform(0.3, 0.45))
            soft = float(rng.uniform(0.1, 0.3)) * w
            sweep = max(int(0.25 * (stop - start)), 1)
            span = w + 2 * soft
            leading = -soft + span * ramp(n, start, start + sweep)
            trailing = -soft + span * ramp(n, stop - sweep, stop)
            self.shadow = (depth, soft, 1.0 if rng.random() < 0.5 else -1.0)
            self.shadow_edges = np.column_stack([leading, trailing])
        self.glare = np.zeros((n, 4))
        if self.has('glare'):
            start, stop = self.windows['glare']
            target = self.target_track
            radius = float(np.mean(self._pixels(target)) * rng.uniform(0.7, 1.2))
            progress = ramp(n, start, stop)
            self.glare[:, 0] = (progress - 0.5) * 2.0 * radius * (1 if rng.random() < .5 else -1)
            self.glare[:, 1] = -float(rng.uniform(0.0, 0.5)) * radius
            self.glare[:, 2] = radius
            self.glare[:, 3] = float(rng.uniform(0.65, 0.9)) * bump(n, start, stop, rise=0.25)

    def build(self) -> Plan:
        self.world()
        self.target()
        self.view()
        self.company()
        self.weather()
        self.lighting()
        windows = tuple(Window(v, *self.windows[v]) for v in self.variants)
        return Plan(self.seed, self.width, self.height, self.fps, windows, self.palette,
                    self.waves, self.foam_level, self.sun, self.light, self.exposure,
                    self.downsample, self.eye, self.horizon, self.roll, self.pan,
                    self.target_track, self.others, self.crest, self.shadow, self.shadow_edges,
                    self.glare, self.harbour)


def build_plan(seed: int, width: int, height: int, frames: int, variants: Sequence[str],
               fps: float = 30.0) -> Plan:
    """Plan one sequence staging ``variants`` (see :data:`VARIANTS`)."""
    unknown = [v for v in variants if v not in VARIANT_CLASS]
    if unknown:
        raise ValueError(f'unknown variants {unknown}; known: {", ".join(VARIANT_CLASS)}')
    if frames < 1:
        raise ValueError(f'a sequence needs at least one frame, got {frames}')
    return _Builder(int(seed), int(width), int(height), int(frames), float(fps),
                    variants).build()


__all__ = ['Harbour', 'Plan', 'Track', 'VARIANTS', 'VARIANT_CLASS', 'WHOLE_SEQUENCE', 'Window',
           'build_plan', 'bump', 'choose_variants', 'parse_mix', 'ramp']
