"""Vessels for synthetic sea scenes: block models of boats and ships, seen from any heading.

A model is a few flat-shaded 3-D parts (prisms: hull, cabins, containers; flat sails) in units
of the vessel's length, with x forward, y to port and z up, the origin at the waterline centre.
:func:`project_vessel` turns it to a heading (yaw), looks at it from a little above
(elevation) and returns the visible faces as polygons, back to front, so turning changes the
outline and the faces seen. :func:`wake_polygons` gives the foam it leaves on the water.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from simtrack_ros.data.synthetic_sea import Colour

KINDS: Tuple[str, ...] = ('motorboat', 'sailboat', 'cargo', 'tug', 'ferry', 'usv', 'patrol')
#: Length range of each kind, in world units (the camera is about 0.3-0.7 units up).
LENGTHS = {'motorboat': (0.35, 0.7), 'sailboat': (0.45, 0.9), 'cargo': (2.5, 5.0),
           'tug': (0.6, 1.0), 'ferry': (1.5, 3.0), 'usv': (0.25, 0.45), 'patrol': (0.8, 1.4)}
HULL_COLOURS: Tuple[Colour, ...] = (
    (190, 40, 35), (235, 235, 230), (60, 62, 66), (30, 45, 95), (25, 25, 28), (230, 120, 30),
    (40, 120, 60), (45, 95, 170), (220, 190, 45), (140, 145, 150))
LIGHT_COLOURS: Tuple[Colour, ...] = ((240, 240, 235), (225, 220, 200), (200, 205, 210))
CONTAINER_COLOURS: Tuple[Colour, ...] = (
    (180, 50, 40), (40, 90, 160), (60, 130, 70), (200, 150, 40), (150, 150, 150), (120, 60, 40))
SAIL_COLOURS: Tuple[Colour, ...] = ((245, 245, 240), (235, 225, 200), (200, 60, 50))
WINDOW = (35, 45, 60)
DECK = (150, 130, 100)
KELVIN_HALF_ANGLE = math.radians(19.5)


@dataclass(frozen=True)
class Part:
    """Faces of one flat-shaded solid (or a two-sided flat piece such as a sail)."""

    vertices: np.ndarray                   # K x 3 (x forward, y port, z up), vessel lengths
    faces: Tuple[Tuple[int, ...], ...]
    normals: np.ndarray                    # F x 3, outward
    colours: Tuple[Colour, ...]            # per face
    two_sided: bool = False


@dataclass(frozen=True)
class VesselModel:
    """A vessel: its kind, length (world units), beam (lengths) and parts, hull first."""

    kind: str
    length: float
    beam: float
    parts: Tuple[Part, ...]

    def resized(self, length: float) -> 'VesselModel':
        """Return the same vessel with another length (a sister ship)."""
        return replace(self, length=float(length))


def _part(vertices, faces, colours, two_sided: bool = False) -> Part:
    vertices = np.asarray(vertices, np.float64)
    centre = vertices.mean(axis=0)
    normals = []
    for face in faces:
        loop = vertices[list(face)]
        # Newell's method: robust for any planar polygon.
        normal = np.cross(loop - loop.mean(axis=0), np.roll(loop, -1, axis=0) - loop.mean(axis=0))
        normal = normal.sum(axis=0)
        normal /= np.linalg.norm(normal) or 1.0
        if not two_sided and np.dot(normal, loop.mean(axis=0) - centre) < 0:
            normal = -normal
        normals.append(normal)
    return Part(vertices, tuple(tuple(f) for f in faces), np.array(normals), tuple(colours),
                two_sided)


def _prism(outline: Sequence[Tuple[float, float]], bottom: float, top, side: Colour,
           top_colour: Optional[Colour] = None) -> Part:
    """Vertical prism over a convex x-y outline; ``top`` a height or one per outline point."""
    ring = np.asarray(outline, np.float64)
    count = len(ring)
    tops = np.broadcast_to(np.asarray(top, np.float64), (count,))
    vertices = np.concatenate([np.column_stack([ring, np.full(count, bottom)]),
                               np.column_stack([ring, tops])])
    faces = [(i, (i + 1) % count, count + (i + 1) % count, count + i) for i in range(count)]
    colours = [side] * count
    if top_colour is not None:
        faces.append(tuple(range(count, 2 * count)))
        colours.append(top_colour)
    return _part(vertices, faces, colours)


def _box(x0, x1, half_width, z0, z1, side: Colour, top: Optional[Colour] = None) -> Part:
    outline = [(x0, -half_width), (x1, -half_width), (x1, half_width), (x0, half_width)]
    return _prism(outline, z0, z1, side, top)


def _hull(beam: float, freeboard: float, shoulder: float, bow_rise: float, colour: Colour,
          deck: Colour) -> Part:
    half = beam / 2
    outline = [(-0.5, -half), (shoulder, -half), (0.5 - 0.3 * (0.5 - shoulder), -0.7 * half),
               (0.5, 0.0), (0.5 - 0.3 * (0.5 - shoulder), 0.7 * half), (shoulder, half),
               (-0.5, half)]
    tops = [freeboard + bow_rise * max(0.0, x - shoulder) / (0.5 - shoulder) for x, _ in outline]
    return _prism(outline, 0.0, tops, colour, deck)


def _cabin(x0, x1, half_width, z0, z1, colour: Colour) -> List[Part]:
    """Build a deckhouse with a band of windows along its upper half."""
    window_z = (z0 + 0.45 * (z1 - z0), z0 + 0.8 * (z1 - z0))
    return [_box(x0, x1, half_width, z0, z1, colour, colour),
            _box(x0 - 1e-3, x1 + 1e-3, half_width + 1e-3, *window_z, WINDOW)]


def _sail(points: Sequence[Tuple[float, float]], colour: Colour) -> Part:
    """Build a flat two-sided sail in the centre plane; ``points`` are (x, z)."""
    vertices = [(x, 0.0, z) for x, z in points]
    return _part(vertices, [tuple(range(len(points)))], [colour], two_sided=True)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def random_vessel(rng: np.random.Generator, kind: Optional[str] = None,
                  length: Optional[float] = None) -> VesselModel:
    """Build a vessel of ``kind`` (random if None) with random proportions and colours."""
    kind = kind or _pick(rng, KINDS)
    if kind not in KINDS:
        raise ValueError(f'unknown vessel kind {kind!r}; known: {", ".join(KINDS)}')
    jitter = lambda: float(rng.uniform(0.85, 1.15))  # noqa: E731
    hull_colour, light = _pick(rng, HULL_COLOURS), _pick(rng, LIGHT_COLOURS)
    parts: List[Part] = []
    if kind == 'motorboat':
        beam, free = 0.34 * jitter(), 0.09 * jitter()
        parts += [_hull(beam, free, 0.15, 0.04, hull_colour, light)]
        parts += _cabin(-0.3, 0.1 * jitter(), beam * 0.35, free, free + 0.13 * jitter(), light)
    elif kind == 'sailboat':
        beam, free = 0.3 * jitter(), 0.07 * jitter()
        mast_x, mast_top = 0.08 * jitter(), free + 0.95 * jitter()
        parts += [_hull(beam, free, 0.1, 0.03, hull_colour, DECK)]
        parts += _cabin(-0.25, 0.05, beam * 0.3, free, free + 0.07, light)
        sail = _pick(rng, SAIL_COLOURS)
        parts += [_box(mast_x - 0.006, mast_x + 0.006, 0.006, free, mast_top, (200, 200, 200)),
                  _sail([(mast_x - 0.01, free + 0.08), (mast_x - 0.01, mast_top - 0.02),
                         (-0.38, free + 0.1)], sail),
                  _sail([(mast_x + 0.01, mast_top - 0.1), (0.46, free + 0.03),
                         (mast_x + 0.01, free + 0.06)], sail)]
    elif kind == 'cargo':
        beam, free = 0.15 * jitter(), 0.07 * jitter()
        parts += [_hull(beam, free, 0.3, 0.02, hull_colour, (120, 70, 50))]
        parts += _cabin(-0.48, -0.38, beam * 0.45, free, free + 0.16 * jitter(), light)
        for x in np.arange(-0.34, 0.3, 0.1):
            height = float(rng.choice([0.03, 0.05, 0.07]))
            colour = _pick(rng, CONTAINER_COLOURS)
            parts.append(_box(x, x + 0.09, beam * 0.42, free, free + height, colour, colour))
    elif kind == 'tug':
        beam, free = 0.36 * jitter(), 0.12 * jitter()
        parts += [_hull(beam, free, 0.2, 0.06, hull_colour, DECK)]
        parts += _cabin(-0.05, 0.22, beam * 0.35, free, free + 0.2 * jitter(), light)
        parts += [_box(0.05, 0.07, 0.01, free + 0.2, free + 0.42, (60, 60, 60))]
    elif kind == 'ferry':
        beam, free = 0.2 * jitter(), 0.09 * jitter()
        deck_2 = free + 0.07 * jitter()
        parts += [_hull(beam, free, 0.3, 0.02, hull_colour, light)]
        parts += _cabin(-0.42, 0.3, beam * 0.45, free, deck_2, light)
        parts += _cabin(-0.3, 0.18, beam * 0.4, deck_2, deck_2 + 0.06 * jitter(), light)
        parts += [_box(-0.25, -0.17, beam * 0.15, deck_2, deck_2 + 0.12, _pick(rng, HULL_COLOURS))]
    elif kind == 'usv':
        beam, free = 0.32 * jitter(), 0.05 * jitter()
        grey = _pick(rng, ((120, 125, 130), (70, 75, 80), (220, 120, 40)))
        parts += [_hull(beam, free, 0.2, 0.01, grey, grey)]
        parts += [_box(-0.1, 0.05, 0.05, free, free + 0.06, (90, 90, 95), (90, 90, 95)),
                  _box(-0.04, -0.02, 0.012, free + 0.06, free + 0.2, (40, 40, 40))]
    else:  # patrol
        beam, free = 0.22 * jitter(), 0.1 * jitter()
        parts += [_hull(beam, free, 0.2, 0.05, hull_colour, (110, 115, 120))]
        parts += _cabin(-0.2, 0.15, beam * 0.38, free, free + 0.13 * jitter(), hull_colour)
        parts += [_box(-0.06, -0.04, 0.01, free + 0.13, free + 0.3, (50, 50, 50)),
                  _box(-0.12, 0.02, 0.01, free + 0.27, free + 0.28, (50, 50, 50))]
    low, high = LENGTHS[kind]
    size = float(length) if length is not None else float(rng.uniform(low, high))
    return VesselModel(kind, size, float(beam), tuple(parts))


def _yaw_matrix(yaw: float) -> np.ndarray:
    """Rows: vessel coordinates to world right (X), away from the camera (Y) and up (Z)."""
    cos, sin = math.cos(yaw), math.sin(yaw)
    return np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])


def _screen_axes(yaw: float, elevation: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vessel-coordinate vectors of screen right, screen up and depth (away from the camera)."""
    world = _yaw_matrix(yaw)
    cos_e, sin_e = math.cos(elevation), math.sin(elevation)
    return world[0], world[1] * sin_e + world[2] * cos_e, world[1] * cos_e - world[2] * sin_e


def _to_scene(points: np.ndarray, right: np.ndarray, up: np.ndarray, pixels: float,
              anchor: Tuple[float, float]) -> np.ndarray:
    return np.column_stack([points @ right, -(points @ up)]) * pixels + np.asarray(anchor)


def project_vessel(model: VesselModel, yaw: float, elevation: float, pixels: float,
                   anchor: Tuple[float, float], sun: np.ndarray, light: float = 1.0
                   ) -> Tuple[List[np.ndarray], List[Colour]]:
    """Visible faces as scene polygons (K x 2) with shaded colours, back to front.

    ``yaw`` 0 faces right, pi/2 away from the camera; ``elevation`` is the viewing angle above
    the water; ``pixels`` is the vessel's length in pixels; ``anchor`` the scene position of
    its waterline centre; ``sun`` a unit vector (screen right, away, up) and ``light`` scales
    the shading (dusk).
    """
    right, up, depth = _screen_axes(yaw, elevation)
    sun_in_vessel = _yaw_matrix(yaw).T @ np.asarray(sun, np.float64)
    order = [0] + sorted(range(1, len(model.parts)),
                         key=lambda i: -float(model.parts[i].vertices.mean(axis=0) @ depth))
    polygons: List[np.ndarray] = []
    colours: List[Colour] = []
    view = -depth                                   # towards the camera, vessel coordinates
    for index in order:
        part = model.parts[index]
        screen = _to_scene(part.vertices, right, up, pixels, anchor)
        facing = part.normals @ view
        lit = part.normals @ sun_in_vessel
        lit = np.abs(lit) if part.two_sided else np.maximum(lit, 0.0)   # unit vectors
        for face, normal_facing, shade, colour in zip(part.faces, facing, lit, part.colours):
            if not part.two_sided and normal_facing <= 1e-6:
                continue
            factor = light * (0.6 + 0.45 * float(shade))
            polygons.append(screen[list(face)])
            colours.append(tuple(min(255.0, c * factor) for c in colour))
    return polygons, colours


def wake_polygons(model: VesselModel, yaw: float, elevation: float, pixels: float,
                  anchor: Tuple[float, float], wake_length: float
                  ) -> Tuple[List[np.ndarray], List[float]]:
    """Foam on the water behind a moving vessel (``wake_length`` in vessel lengths).

    Returns scene polygons and their foam opacities: the churned strip behind the stern, the
    two arms of the Kelvin wedge and the bow wave.
    """
    if wake_length <= 0:
        return [], []
    half = model.beam / 2
    spread = math.tan(KELVIN_HALF_ANGLE)
    end = -0.5 - wake_length
    shapes = [
        ([(-0.5, -half * 0.6), (-0.5, half * 0.6), (-0.5 - 0.6 * wake_length, half * 0.9),
          (-0.5 - 0.6 * wake_length, -half * 0.9)], 0.55),
        ([(-0.45, half), (end, half + spread * wake_length),
          (end, half + spread * wake_length + 0.04), (-0.45, half + 0.02)], 0.4),
        ([(-0.45, -half), (end, -half - spread * wake_length),
          (end, -half - spread * wake_length - 0.04), (-0.45, -half - 0.02)], 0.4),
        ([(0.5, 0.0), (0.3, half * 1.3), (0.2, half * 1.2), (0.2, -half * 1.2),
          (0.3, -half * 1.3)], 0.5)]
    right, up, _ = _screen_axes(yaw, elevation)
    polygons = [_to_scene(np.column_stack([np.asarray(outline), np.zeros(len(outline))]),
                          right, up, pixels, anchor) for outline, _ in shapes]
    return polygons, [opacity for _, opacity in shapes]


__all__ = ['KINDS', 'LENGTHS', 'Part', 'VesselModel', 'project_vessel', 'random_vessel',
           'wake_polygons']
