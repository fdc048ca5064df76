"""Synthetic sea scenes: a boat crossing textured, moving waves, with its true box.

ROS-free (numpy and OpenCV only) so the demo camera, training and evaluation can share it.
A frame is a pure function of ``(t, width, height, seed)``: the same arguments always give the
same pixels and the same box.

Scene: a sky gradient over a bobbing horizon; a sea whose waves are a sum of travelling
sinusoids seen in perspective (long swell plus short chop, white caps on the crests, haze
towards the horizon); a boat (red hull, white cabin with windows, a short wake) moving back and
forth across the water and slowly towards and away from the camera, so its size changes.
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

_SKY_TOP = np.array([190.0, 130.0, 70.0], np.float32)       # BGR
_SKY_HORIZON = np.array([235.0, 220.0, 200.0], np.float32)
_SEA_NEAR = np.array([95.0, 65.0, 25.0], np.float32)
_SEA_FAR = np.array([160.0, 140.0, 110.0], np.float32)
_FOAM = np.array([235.0, 240.0, 240.0], np.float32)
_HULL_COLOURS = ((40, 60, 200), (30, 140, 230), (60, 60, 60), (40, 170, 60))  # BGR
_CABIN = (235, 235, 235)
_WINDOWS = (70, 55, 40)
_SUB_PIXEL_BITS = 4

# Boat outline, facing +x, in units of its length; origin at the waterline centre, y down.
_HULL = np.array([(-0.48, -0.22), (0.36, -0.22), (0.52, -0.30), (0.38, 0.0), (-0.44, 0.0)])
_CABIN_BOX = np.array([(-0.30, -0.46), (0.06, -0.46), (0.10, -0.22), (-0.30, -0.22)])
_WINDOW_BOX = np.array([(-0.25, -0.40), (0.02, -0.40), (0.04, -0.32), (-0.25, -0.32)])


@dataclass(frozen=True)
class _SceneParams:
    """Everything the seed decides."""

    wave_kx: np.ndarray       # lateral wave numbers (rad per world unit)
    wave_kz: np.ndarray       # depth wave numbers
    wave_omega: np.ndarray    # angular speeds (rad/s)
    wave_phase: np.ndarray
    wave_amp: np.ndarray
    path_period: float        # seconds for one crossing there and back
    path_phase: float
    bob_phase: float
    hull_bgr: Tuple[int, int, int]


@functools.lru_cache(maxsize=16)
def _scene_params(seed: int) -> _SceneParams:
    rng = np.random.default_rng(seed)
    # Three long swells and three short chop components travelling in different directions.
    wavelength = np.concatenate([rng.uniform(0.35, 0.6, 3), rng.uniform(0.06, 0.12, 3)])
    direction = rng.uniform(-0.6, 0.6, 6) + np.pi / 2
    k = 2 * np.pi / wavelength
    return _SceneParams(
        wave_kx=(k * np.cos(direction)).astype(np.float32),
        wave_kz=(k * np.sin(direction)).astype(np.float32),
        wave_omega=np.sqrt(9.81 * k / 8).astype(np.float32),  # deep-water dispersion, scaled
        wave_phase=rng.uniform(0, 2 * np.pi, 6).astype(np.float32),
        wave_amp=np.array([0.5, 0.35, 0.25, 0.2, 0.15, 0.12], np.float32),
        path_period=float(rng.uniform(16.0, 24.0)),
        path_phase=float(rng.uniform(0, 2 * np.pi)),
        bob_phase=float(rng.uniform(0, 2 * np.pi)),
        hull_bgr=_HULL_COLOURS[int(rng.integers(len(_HULL_COLOURS)))])


def _horizon_y(t: float, height: int, params: _SceneParams) -> float:
    """Row of the horizon; the camera pitches gently with the swell."""
    return height * (0.38 + 0.012 * math.sin(2 * math.pi * t / 5.0 + params.bob_phase))


def _paint_sky(frame: np.ndarray, horizon: float) -> None:
    rows = np.arange(frame.shape[0], dtype=np.float32)
    weight = np.clip(rows / max(horizon, 1.0), 0.0, 1.0)[:, None]
    frame[:] = (_SKY_TOP * (1 - weight) + _SKY_HORIZON * weight)[:, None, :]


def _paint_sea(frame: np.ndarray, t: float, horizon: float, params: _SceneParams) -> None:
    height, width = frame.shape[:2]
    first_row = int(math.floor(horizon)) + 1
    if first_row >= height:
        return
    rows = np.arange(first_row, height, dtype=np.float32)
    depth = (rows - horizon) / (height - horizon)        # 0 at the horizon, 1 at the bottom
    distance = 1.0 / depth                                # world units from the camera
    lateral = (np.arange(width, dtype=np.float32) - width / 2) / (width / 2)
    world_x = lateral[None, :] * distance[:, None]
    world_z = np.broadcast_to(distance[:, None], world_x.shape)
    # World units per pixel across (x) and down (z) each row, for anti-aliasing.
    step_x = distance / (width / 2)
    step_z = distance / depth / (height - horizon)
    waves = np.zeros_like(world_x)
    for kx, kz, omega, phase, amp in zip(params.wave_kx, params.wave_kz, params.wave_omega,
                                         params.wave_phase, params.wave_amp):
        # Phase change per pixel over pi: 1 at the Nyquist limit. Fade a component out between
        # 8 and 4 pixels per wavelength, so far waves turn into haze instead of moire.
        cycles = np.maximum(abs(kx) * step_x, abs(kz) * step_z) / np.pi
        weight = amp * np.clip((0.5 - cycles) / 0.25, 0.0, 1.0)
        waves += weight[:, None] * np.sin(kx * world_x + kz * world_z - omega * t + phase)
    near = np.clip(depth, 0.0, 1.0)[:, None, None]
    base = _SEA_FAR * (1 - near) + _SEA_NEAR * near
    shade = (1.0 + 0.22 * waves)[:, :, None]
    caps = np.clip((waves - 0.9) * 2.5, 0.0, 1.0)[:, :, None]
    frame[first_row:] = (base * shade) * (1 - caps) + _FOAM * caps
    # A soft haze band along the horizon.
    band = slice(max(first_row - 2, 0), min(first_row + 3, height))
    frame[band] = 0.5 * frame[band] + 0.5 * _SKY_HORIZON


def _boat_pose(t: float, width: int, height: int, horizon: float, params: _SceneParams
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


def _fill(frame: np.ndarray, points: np.ndarray, colour: Tuple[int, int, int]) -> None:
    fixed = np.round(points * (1 << _SUB_PIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(frame, [fixed], colour, lineType=cv2.LINE_AA, shift=_SUB_PIXEL_BITS)


def _paint_boat(frame: np.ndarray, t: float, horizon: float, params: _SceneParams) -> BoxXYWH:
    height, width = frame.shape[:2]
    centre_x, waterline_y, length, heading = _boat_pose(t, width, height, horizon, params)
    centre = (centre_x, waterline_y)
    # Wake: a flat foam streak trailing the stern on the water (not part of the target).
    wake_centre = (round(centre_x - heading * 0.62 * length), round(waterline_y))
    wake_axes = (max(round(0.2 * length), 1), max(round(0.025 * length), 1))
    cv2.ellipse(frame, wake_centre, wake_axes, 0, 0, 360, _FOAM.tolist(), -1, cv2.LINE_AA)
    hull = _to_pixels(_HULL, centre, length, heading)
    cabin = _to_pixels(_CABIN_BOX, centre, length, heading)
    _fill(frame, cabin, _CABIN)
    _fill(frame, _to_pixels(_WINDOW_BOX, centre, length, heading), _WINDOWS)
    _fill(frame, hull, params.hull_bgr)
    corners = np.concatenate([hull, cabin])
    x1, y1 = np.clip(corners.min(axis=0), 0, (width, height))
    x2, y2 = np.clip(corners.max(axis=0), 0, (width, height))
    return float(x1), float(y1), float(x2 - x1), float(y2 - y1)


def render_sea_frame(t: float, width: int = 640, height: int = 480, seed: int = 0
                     ) -> Tuple[np.ndarray, BoxXYWH]:
    """Render the scene at time ``t`` seconds.

    Returns:
        ``(image, box)``: a ``height x width x 3`` uint8 BGR image and the target's box
        ``(x, y, w, h)`` in pixels (float, clipped to the image).
    """
    if width < 32 or height < 32:
        raise ValueError(f'frame must be at least 32x32 pixels, got {width}x{height}')
    params = _scene_params(int(seed))
    horizon = _horizon_y(t, height, params)
    canvas = np.empty((height, width, 3), np.float32)
    _paint_sky(canvas, horizon)
    _paint_sea(canvas, t, horizon, params)
    frame = np.clip(canvas, 0, 255).astype(np.uint8)
    box = _paint_boat(frame, t, horizon, params)
    return frame, box


__all__ = ['BoxXYWH', 'render_sea_frame']
