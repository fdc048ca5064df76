"""Synthetic sea scenes: sky and moving waves seen from a boat, and the demo camera's scene.

ROS-free (numpy and OpenCV only) so the demo camera, the dataset generator
(:mod:`simtrack_ros.data.synthetic_scene`), training and evaluation share it.

Background: a sky gradient over a horizon that pitches and rolls with the camera boat; a sea
whose waves are a sum of travelling sinusoids seen in perspective (long swell plus short chop,
white caps on the crests, haze towards the horizon), optionally in fog. :func:`paint_background`
paints it into a float RGB canvas and returns the white-cap coverage.

Demo scene (:func:`render_sea_frame`): a pure function of ``(t, width, height, seed)``: a boat
(red hull, white cabin with windows, a short wake) moving back and forth across the water and
slowly towards and away from the camera, so its size changes.
"""
from __future__ import annotations

from dataclasses import dataclass
import functools
import math
from typing import Tuple

import cv2
import numpy as np

#: Box of the target, ``(x, y, w, h)`` in pixels, (x, y) the top-left corner.
BoxXYWH = Tuple[float, float, float, float]
Colour = Tuple[float, float, float]

_HULL_COLOURS = ((200, 60, 40), (230, 140, 30), (60, 60, 60), (60, 170, 40))  # RGB
_CABIN = (235, 235, 235)
_WINDOWS = (40, 55, 70)
_SUB_PIXEL_BITS = 4

# Demo boat outline, facing +x, in units of its length; origin at the waterline centre, y down.
_HULL = np.array([(-0.48, -0.22), (0.36, -0.22), (0.52, -0.30), (0.38, 0.0), (-0.44, 0.0)])
_CABIN_BOX = np.array([(-0.30, -0.46), (0.06, -0.46), (0.10, -0.22), (-0.30, -0.22)])
_WINDOW_BOX = np.array([(-0.25, -0.40), (0.02, -0.40), (0.04, -0.32), (-0.25, -0.32)])


@dataclass(frozen=True)
class SeaPalette:
    """Colours (RGB, 0-255) of sky, sea, foam and fog; ``fog`` 0 is clear air."""

    sky_top: Colour = (70.0, 130.0, 190.0)
    sky_horizon: Colour = (200.0, 220.0, 235.0)
    sea_near: Colour = (25.0, 65.0, 95.0)
    sea_far: Colour = (110.0, 140.0, 160.0)
    foam: Colour = (240.0, 240.0, 235.0)
    fog_colour: Colour = (200.0, 205.0, 210.0)
    fog: float = 0.0            # fog opacity at infinite distance (0..1)
    fog_distance: float = 4.0   # distance (world units) at which fog reaches 63 % of ``fog``

    def fog_alpha(self, distance):
        """Fog opacity at ``distance`` (scalar or array; infinity for the sky)."""
        return self.fog * (1.0 - np.exp(-np.asarray(distance, np.float32) / self.fog_distance))


@dataclass(frozen=True)
class SeaView:
    """Where the camera looks, in pixels.

    Scene coordinates ``(u, v)`` are the image before the camera's roll: the horizon is the row
    ``v = horizon``, a point on the water ``distance`` units away lies ``eye / distance`` rows
    below it and ``focal * lateral / distance`` columns right of ``width / 2 + pan``
    (``focal = width / 2``). The image is the scene turned by ``roll`` radians (clockwise) about
    the image centre.
    """

    width: int
    height: int
    horizon: float
    eye: float
    roll: float = 0.0
    pan: float = 0.0

    @property
    def focal(self) -> float:
        return self.width / 2.0

    def project(self, lateral: float, distance: float) -> Tuple[float, float]:
        """Scene ``(u, v)`` of the water point ``lateral`` units right, ``distance`` ahead."""
        return (self.width / 2.0 + self.pan + self.focal * lateral / distance,
                self.horizon + self.eye / distance)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Map scene points (... x 2) to image points (rotation by ``roll`` about the centre)."""
        points = np.asarray(points, np.float64)
        if self.roll == 0.0:
            return points
        cos, sin = math.cos(self.roll), math.sin(self.roll)
        centre = np.array([self.width / 2.0, self.height / 2.0])
        return (points - centre) @ np.array([[cos, sin], [-sin, cos]]) + centre

    def to_scene(self, points: np.ndarray) -> np.ndarray:
        """Map image points (... x 2) to scene points (the inverse of :meth:`to_image`)."""
        return SeaView(self.width, self.height, self.horizon, self.eye, -self.roll,
                       self.pan).to_image(points)


@dataclass(frozen=True)
class WaveField:
    """Travelling sinusoids of the sea surface (wave numbers in rad per world unit)."""

    kx: np.ndarray
    kz: np.ndarray
    omega: np.ndarray
    phase: np.ndarray
    amp: np.ndarray


def random_waves(rng: np.random.Generator, chop: float = 1.0) -> WaveField:
    """Draw three long swells and three short chop components (scaled by ``chop``).

    Directions are random; speeds follow deep-water dispersion (scaled).
    """
    wavelength = np.concatenate([rng.uniform(0.35, 0.6, 3), rng.uniform(0.06, 0.12, 3)])
    direction = rng.uniform(-0.6, 0.6, 6) + np.pi / 2
    k = 2 * np.pi / wavelength
    return WaveField(
        kx=(k * np.cos(direction)).astype(np.float32),
        kz=(k * np.sin(direction)).astype(np.float32),
        omega=np.sqrt(9.81 * k / 8).astype(np.float32),
        phase=rng.uniform(0, 2 * np.pi, 6).astype(np.float32),
        amp=(np.array([0.5, 0.35, 0.25, 0.2, 0.15, 0.12], np.float32)
             * np.array([1, 1, 1, chop, chop, chop], np.float32)))


def paint_background(canvas: np.ndarray, t: float, view: SeaView, waves: WaveField,
                     palette: SeaPalette = SeaPalette(), foam_level: float = 0.9) -> np.ndarray:
    """Paint sky and sea at time ``t`` into ``canvas`` (planar float32 3 x H x W, RGB 0-255).

    White caps cover wave heights above ``foam_level`` (lower: a rougher sea). Returns the
    white-cap coverage (float32 H x W, 0..1; 0 in the sky). A rolled view is painted upright
    over the image's footprint in the scene, then turned (bilinear).
    """
    if view.roll == 0.0:
        return _paint_scene(canvas, (0, 0), t, view, waves, palette, foam_level)
    height, width = canvas.shape[1:]
    corners = view.to_scene(np.array([(0, 0), (width, 0), (0, height), (width, height)]))
    low = np.floor(corners.min(axis=0)).astype(int) - 1
    size = np.ceil(corners.max(axis=0)).astype(int) + 2 - low
    scene = np.empty((3, size[1], size[0]), np.float32)
    scene_foam = _paint_scene(scene, (int(low[0]), int(low[1])), t, view, waves, palette,
                              foam_level)
    cos, sin = math.cos(view.roll), math.sin(view.roll)
    centre = np.array([width / 2.0, height / 2.0])
    # Image pixel -> scene canvas pixel: rotate by -roll about the centre, shift by -low.
    matrix = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]])
    matrix[:, 2] = centre - matrix[:, :2] @ centre - low
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for channel in range(3):
        cv2.warpAffine(scene[channel], matrix, (width, height), dst=canvas[channel],
                       flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(scene_foam, matrix, (width, height),
                          flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _paint_scene(canvas: np.ndarray, origin: Tuple[int, int], t: float, view: SeaView,
                 waves: WaveField, palette: SeaPalette, foam_level: float) -> np.ndarray:
    """Paint the upright scene region whose top-left scene pixel is ``origin`` into ``canvas``.

    Per-row quantities (distance, colours, fog) stay columns; full-size work is done in place.
    """
    height, width = canvas.shape[1:]
    v = np.arange(origin[1], origin[1] + height, dtype=np.float32)[:, None]
    top = min(max(math.floor(view.horizon) - origin[1], 0), height)
    # Sky down to a few rows under the horizon (the sea blends into it there).
    sky_rows = slice(0, min(top + 6, height))
    sky_weight = np.clip(v[sky_rows] / max(view.horizon, 1.0), 0.0, 1.0)
    fog = palette.fog
    for channel in range(3):
        sky = _lerp(palette.sky_top[channel], palette.sky_horizon[channel], sky_weight)
        canvas[channel, sky_rows] = sky if not fog else _lerp(sky, palette.fog_colour[channel],
                                                              fog)
    foam = np.zeros((height, width), np.float32)
    if top >= height:
        return foam
    v = v[top:]
    u = np.arange(origin[0], origin[0] + width, dtype=np.float32)[None, :]
    below = np.maximum(v - view.horizon, 1e-3)
    distance = view.eye / below                          # world units from the camera
    world_x = (u - (view.width / 2.0 + view.pan)) * (distance / view.focal)
    step_x = distance / view.focal                       # world units per pixel across
    step_z = distance * distance / view.eye              # and down
    heights = np.zeros(world_x.shape, np.float32)
    work = np.empty_like(heights)
    for kx, kz, omega, phase, amp in zip(waves.kx, waves.kz, waves.omega, waves.phase,
                                         waves.amp):
        # Phase change per pixel over pi: 1 at the Nyquist limit. Fade a component out between
        # 8 and 4 pixels per wavelength, so far waves turn into haze instead of moire.
        cycles = np.maximum(abs(kx) * step_x, abs(kz) * step_z) / np.pi
        weight = amp * np.clip((0.5 - cycles) * 4.0, 0.0, 1.0)
        rows = np.flatnonzero(weight[:, 0] > 0)
        if len(rows):
            near, part = slice(rows[0], None), work[rows[0]:]
            np.multiply(world_x[near], kx, out=part)
            part += kz * distance[near] + (phase - omega * t)
            np.sin(part, out=part)
            part *= weight[near]
            heights[near] += part
    caps = np.clip((heights - foam_level) * 2.5, 0.0, 1.0, out=work)
    shade = np.multiply(heights, 0.22, out=heights)
    shade += 1.0
    keep = 1.0 - caps
    near = np.clip(below / view.eye, 0.0, 1.0)
    fog_alpha = palette.fog_alpha(distance) if fog else np.float32(0.0)
    # A soft haze band along the horizon; water blends into the sky over the horizon's pixel.
    edge = slice(0, int(np.searchsorted(v[:, 0], view.horizon + 3.5)))
    band = np.clip(1.0 - np.abs(v[edge] - view.horizon - 0.5) / 3.0, 0.0, 1.0) * 0.5
    water = np.clip(v[edge] - view.horizon, 0.0, 1.0)
    for channel in range(3):
        base = _lerp(palette.sea_far[channel], palette.sea_near[channel], near)
        sea = canvas[channel, top:]
        sky_edge = sea[edge].copy()
        np.multiply(shade, base * (1 - fog_alpha), out=sea)
        sea *= keep
        sea += caps * (palette.foam[channel] * (1 - fog_alpha))
        if fog:
            sea += palette.fog_colour[channel] * fog_alpha
        sea[edge] = _lerp(sky_edge, _lerp(sea[edge], palette.sky_horizon[channel], band),
                          water)
    foam[top:] = caps
    foam[top:][edge] *= water
    return foam


def _lerp(a, b, weight):
    """Blend ``a`` towards ``b`` by ``weight`` (scalars or broadcastable arrays)."""
    return a + (b - a) * weight


# ---------------------------------------------------------------------------------------------
# The demo camera's scene.

@dataclass(frozen=True)
class _DemoParams:
    """Everything the demo seed decides."""

    waves: WaveField
    path_period: float        # seconds for one crossing there and back
    path_phase: float
    bob_phase: float
    hull_rgb: Tuple[int, int, int]


@functools.lru_cache(maxsize=16)
def _demo_params(seed: int) -> _DemoParams:
    rng = np.random.default_rng(seed)
    return _DemoParams(
        waves=random_waves(rng),
        path_period=float(rng.uniform(16.0, 24.0)),
        path_phase=float(rng.uniform(0, 2 * np.pi)),
        bob_phase=float(rng.uniform(0, 2 * np.pi)),
        hull_rgb=_HULL_COLOURS[int(rng.integers(len(_HULL_COLOURS)))])


def _boat_pose(t: float, width: int, height: int, horizon: float, params: _DemoParams
               ) -> Tuple[float, float, float, int]:
    """Waterline centre (x, y), length in pixels and heading (+1 right, -1 left)."""
    angle = 2 * math.pi * t / params.path_period + params.path_phase
    centre_x = width * (0.5 + 0.3 * math.sin(angle))
    heading = 1 if math.cos(angle) >= 0 else -1
    # Depth fraction below the horizon: nearer (larger) and farther (smaller) over time.
    depth = 0.42 + 0.1 * math.sin(0.6 * angle + 1.0)
    bob = 0.01 * height * depth * math.sin(2 * math.pi * t / 2.3 + params.bob_phase)
    waterline_y = horizon + depth * (height - horizon) + bob
    return centre_x, waterline_y, 0.3 * width * depth, heading


def _to_pixels(outline: np.ndarray, centre: Tuple[float, float], length: float,
               heading: int) -> np.ndarray:
    points = outline * length
    points[:, 0] *= heading
    return points + np.asarray(centre)


def to_uint8_image(canvas: np.ndarray) -> np.ndarray:
    """Planar float 3 x H x W (0-255) to an interleaved uint8 H x W x 3 image."""
    return cv2.merge([np.clip(plane, 0, 255).astype(np.uint8) for plane in canvas])


def fill_polygon(image: np.ndarray, points: np.ndarray, colour) -> None:
    """Fill a polygon (K x 2 float pixel coordinates) anti-aliased, with sub-pixel precision."""
    fixed = np.round(np.asarray(points) * (1 << _SUB_PIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(image, [fixed], colour, lineType=cv2.LINE_AA, shift=_SUB_PIXEL_BITS)


def _paint_boat(frame: np.ndarray, t: float, horizon: float, params: _DemoParams) -> BoxXYWH:
    height, width = frame.shape[:2]
    centre_x, waterline_y, length, heading = _boat_pose(t, width, height, horizon, params)
    centre = (centre_x, waterline_y)
    # Wake: a flat foam streak trailing the stern on the water (not part of the target).
    wake_centre = (round(centre_x - heading * 0.62 * length), round(waterline_y))
    wake_axes = (max(round(0.2 * length), 1), max(round(0.025 * length), 1))
    cv2.ellipse(frame, wake_centre, wake_axes, 0, 0, 360, SeaPalette.foam, -1, cv2.LINE_AA)
    hull = _to_pixels(_HULL, centre, length, heading)
    cabin = _to_pixels(_CABIN_BOX, centre, length, heading)
    fill_polygon(frame, cabin, _CABIN)
    fill_polygon(frame, _to_pixels(_WINDOW_BOX, centre, length, heading), _WINDOWS)
    fill_polygon(frame, hull, params.hull_rgb)
    corners = np.concatenate([hull, cabin])
    x1, y1 = np.clip(corners.min(axis=0), 0, (width, height))
    x2, y2 = np.clip(corners.max(axis=0), 0, (width, height))
    return float(x1), float(y1), float(x2 - x1), float(y2 - y1)


def render_sea_frame(t: float, width: int = 640, height: int = 480, seed: int = 0
                     ) -> Tuple[np.ndarray, BoxXYWH]:
    """Render the demo scene at time ``t`` seconds.

    Returns:
        ``(image, box)``: a ``height x width x 3`` uint8 BGR image and the target's box
        ``(x, y, w, h)`` in pixels (float, clipped to the image).
    """
    if width < 32 or height < 32:
        raise ValueError(f'frame must be at least 32x32 pixels, got {width}x{height}')
    params = _demo_params(int(seed))
    # The camera pitches gently with the swell.
    horizon = height * (0.38 + 0.012 * math.sin(2 * math.pi * t / 5.0 + params.bob_phase))
    canvas = np.empty((3, height, width), np.float32)
    view = SeaView(width, height, horizon, eye=height - horizon)
    paint_background(canvas, t, view, params.waves)
    frame = to_uint8_image(canvas)
    box = _paint_boat(frame, t, horizon, params)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), box


__all__ = ['BoxXYWH', 'SeaPalette', 'SeaView', 'WaveField', 'fill_polygon', 'paint_background',
           'random_waves', 'render_sea_frame', 'to_uint8_image']
