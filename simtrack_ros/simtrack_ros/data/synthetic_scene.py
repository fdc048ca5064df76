"""Render a synthetic sequence's frames from its plan and measure their labels on the render.

Every object is a sprite (:mod:`~simtrack_ros.data.synthetic_sprites`), so the target's
coverage and what lies in front of it are known pixel by pixel. Each frame's ten-class truth is
measured on what was drawn, never taken from the plan's intentions (:class:`LabelRules` holds
the thresholds; ``docs/data.md`` defines each measure):

- motion blur: the length of the target's motion during the exposure (its image motion,
  camera shake included) is at least ``motion_blur`` of the frame width;
- illumination change: the mean luminance of the target's visible pixels under this frame's
  light differs from the same pixels under the first frame's light by ``illumination`` or more;
- scale variation: OTB's rule, box area over the first box's area outside
  ``[1/scale_ratio, scale_ratio]``;
- variance in appearance: the intersection over union of the target's silhouette (fixed size,
  aligned at the waterline centre) with the first frame's is below ``appearance_iou``;
- partial visibility (``cut_by_image``): at least ``partial_outside`` of the target's coverage
  lies outside the image;
- occlusion: objects in front hide more than ``occlusion_hidden`` of the target's coverage;
  ``visible`` = coverage in the image and not hidden over all coverage; ``cover`` =
  round(8 * visible); ``absent`` when ``visible`` is below ``absent_visible``;
- background clutter: foam, harbour and other vessels' coverage in the surroundings (the box
  grown by half its size on each side, target pixels excluded) add up to at least ``clutter``
  times the target's coverage;
- low resolution: OTB's rule on the area the camera really resolved, box area over the
  square of the down-sampling factor below ``low_resolution_area`` pixels;
- low contrast: the mean RGB distance of the target's visible pixels from the mean colour of
  its surroundings in the final image, divided by 255, is below ``low_contrast``.

``cover`` rounds half up: with the target wholly in the image, ``cover < 8`` exactly when
occlusion is flagged (the dataset-label rule reads it back the same way).
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from simtrack_ros.challenges import CHALLENGE_NAMES, NORMAL
from simtrack_ros.data.dataset_labels import LOW_RESOLUTION_AREA, SCALE_RATIO
from simtrack_ros.data.synthetic_plan import Plan, Track
from simtrack_ros.data.synthetic_sea import (
    Colour, fill_polygon, paint_background, SeaView, to_uint8_image)
from simtrack_ros.data.synthetic_sprites import blur_canvas, intersect, rasterise, Rect, Sprite
from simtrack_ros.data.synthetic_vessels import project_vessel, wake_polygons

BoxXYWH = Tuple[float, float, float, float]
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_SILHOUETTE = 96


@dataclass(frozen=True)
class LabelRules:
    """Thresholds of the measured labels (module docstring)."""

    motion_blur: float = 0.01
    illumination: float = 0.25
    scale_ratio: float = SCALE_RATIO
    appearance_iou: float = 0.75
    partial_outside: float = 0.01
    occlusion_hidden: float = 1.0 / 16.0
    absent_visible: float = 0.02
    clutter: float = 0.5
    low_resolution_area: float = LOW_RESOLUTION_AREA
    low_contrast: float = 0.12


@dataclass(frozen=True)
class Geometry:
    """The target in one frame, measured on its coverage and on what lies in front of it."""

    box: BoxXYWH                # clipped to the image
    coverage: float             # target pixels inside the image (sum of coverage)
    visible: float              # share of the whole target that is in the image and not hidden
    outside: float              # share outside the image
    hidden: float               # share hidden by objects in front
    blur: float                 # pixels moved during the exposure
    silhouette: np.ndarray


@dataclass(frozen=True)
class FrameTruth:
    """One frame's ground truth: geometry, pixel measures, label-file values and class flags."""

    geometry: Geometry
    light_change: float
    contrast: Optional[float]   # None when too little of the target is visible
    clutter: float
    appearance_iou: float
    effective_area: float
    flags: Dict[str, bool]      # the nine challenges ('normal' iff none is set)
    absent: bool
    cover: int

    @property
    def box(self) -> BoxXYWH:
        return self.geometry.box

    @property
    def visible(self) -> float:
        return self.geometry.visible

    @property
    def cut_by_image(self) -> bool:
        return self.flags['partial_visibility']

    def active(self) -> Tuple[str, ...]:
        """Classes flagged on, in CHALLENGE_NAMES order; ('normal',) when none is."""
        names = tuple(name for name in CHALLENGE_NAMES if self.flags.get(name))
        return names or (NORMAL,)


@dataclass
class _Object:
    """One drawable in one frame: image polygons, colours, distance and motion blur."""

    distance: float
    polygons: List[np.ndarray]
    colours: List[Colour]
    blur: Tuple[float, float]
    track: Optional[Track] = None       # None for the wave crest
    anchor: Tuple[float, float] = (0.0, 0.0)
    pixels: float = 0.0
    elevation: float = 0.0
    fade: Tuple[float, float] = (0.0, 0.0)   # crest: rows where its foot fades out


def _to_image(view: SeaView, polygons: List[np.ndarray]) -> List[np.ndarray]:
    """Map scene polygons to the image in one transform."""
    if not polygons:
        return []
    points = view.to_image(np.concatenate(polygons))
    return np.split(points, np.cumsum([len(p) for p in polygons])[:-1])


def label_files(geometry: Geometry, rules: LabelRules) -> Tuple[bool, bool, int]:
    """``absent``, ``cut_by_image`` and ``cover`` (0..8) of a frame, as the label files hold."""
    return (geometry.visible < rules.absent_visible, geometry.outside >= rules.partial_outside,
            int(math.floor(8 * geometry.visible + 0.5)))


def _silhouette(track: Track, index: int, elevation: float) -> np.ndarray:
    """Coverage of the vessel drawn at a fixed size, waterline centre at a fixed point."""
    mask = np.zeros((_SILHOUETTE, _SILHOUETTE), np.uint8)
    polygons, _ = project_vessel(track.model, float(track.yaw[index]), elevation,
                                 _SILHOUETTE * 0.5, (_SILHOUETTE / 2, _SILHOUETTE * 0.75),
                                 np.array([0.0, 0.0, 1.0]))
    for polygon in polygons:
        fill_polygon(mask, polygon, 255)
    return mask.astype(np.float32) / 255.0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(a, b).sum() / max(np.maximum(a, b).sum(), 1e-6))


def _rect_slices(rect: Rect) -> Tuple[slice, slice]:
    return slice(rect[1], rect[3]), slice(rect[0], rect[2])


def _contrast(image: np.ndarray, visible: np.ndarray, target: np.ndarray,
              ring: Rect) -> Optional[float]:
    """Mean colour distance (0-1) of visible target pixels from the surroundings' mean."""
    rows, cols = _rect_slices(ring)
    step = 2 if visible.size > 40000 else 1     # every other pixel of large surroundings
    pixels = image[rows, cols][::step, ::step].astype(np.float32)
    inside, around = visible[::step, ::step] >= 0.5, target[::step, ::step] < 0.05
    if np.count_nonzero(inside) < 4 or np.count_nonzero(around) < 4:
        return None
    surround = pixels[around].mean(axis=0)
    return float(np.linalg.norm(pixels[inside] - surround, axis=1).mean() / 255.0)


class SceneRenderer:
    """Frames and measured truth of one plan; frame ``i`` depends only on the plan and ``i``."""

    def __init__(self, plan: Plan, rules: LabelRules = LabelRules()):
        self.plan = plan
        self.rules = rules
        self._first: Optional[Geometry] = None
        self._layouts: Dict[int, Tuple[List[_Object], _Object]] = {}

    # --- placement -----------------------------------------------------------------------

    def _anchor(self, track: Track, index: int) -> Tuple[np.ndarray, float, float]:
        """Scene waterline centre, length in pixels and viewing elevation of a vessel."""
        plan = self.plan
        view = plan.view(index)
        distance = float(track.distance[index])
        pixels = view.focal * track.model.length / distance
        _, row = view.project(0.0, distance)
        anchor = np.array([float(track.u[index]) + view.pan,
                           row + float(track.bob[index]) * pixels])
        return anchor, pixels, math.atan(plan.eye / (view.focal * distance))

    def _motion(self, index: int, scene_point) -> Tuple[float, float]:
        """Image motion during frame ``index``'s exposure of ``scene_point(frame)``."""
        plan = self.plan
        before, after = [min(max(index + step, 0), plan.frames - 1) for step in (-1, 1)]
        if before == after:
            return 0.0, 0.0
        points = [plan.view(j).to_image(scene_point(j)) for j in (before, after)]
        motion = (points[1] - points[0]) / (after - before) * plan.exposure
        return float(motion[0]), float(motion[1])

    def _vessel(self, track: Track, index: int) -> _Object:
        plan = self.plan
        view = plan.view(index)
        anchor, pixels, elevation = self._anchor(track, index)
        polygons, colours = project_vessel(track.model, float(track.yaw[index]), elevation,
                                           pixels, (anchor[0], anchor[1]), plan.sun, plan.light)
        blur = self._motion(index, lambda j: self._anchor(track, j)[0])
        return _Object(float(track.distance[index]), _to_image(view, polygons),
                       colours, blur, track, (float(anchor[0]), float(anchor[1])), pixels,
                       elevation)

    def _crest(self, target: _Object, index: int) -> Optional[_Object]:
        """Place a swell crest in front of the target's lower part (None when calm)."""
        plan = self.plan
        rise = float(plan.crest[index])
        if rise <= 0:
            return None
        view = plan.view(index)
        scene = np.concatenate([view.to_scene(p) for p in target.polygons])
        x0, x1 = float(scene[:, 0].min()), float(scene[:, 0].max())
        waterline = target.anchor[1]
        tall = max(waterline - float(scene[:, 1].min()), 1.0)
        height = rise * tall
        centre, half = (x0 + x1) / 2, 1.3 * (x1 - x0) + 2.0
        xs = np.linspace(centre - half, centre + half, 25)
        hump = np.clip(1.6 * np.cos(0.5 * np.pi * (xs - centre) / half), 0.0, 1.0) ** 1.5
        top = waterline - height * hump + 0.05 * height * np.sin(0.15 * xs + 0.4 * index) * hump
        foot, bottom = waterline + 0.1 * tall + 1.0, waterline + 0.4 * tall + 3.0
        body = np.vstack([np.column_stack([xs, top]), [(xs[-1], bottom), (xs[0], bottom)]])
        crested = hump > 0.3
        foam = np.column_stack([np.concatenate([xs[crested], xs[crested][::-1]]),
                                np.concatenate([top[crested],
                                                (top + 0.15 * height * hump)[crested][::-1]])])
        rows = view.to_image(np.array([(centre, foot), (centre, bottom)]))[:, 1]
        return _Object(target.distance * 0.999, [view.to_image(body), view.to_image(foam)],
                       [(0.0, 0.0, 0.0)] * 2, target.blur, fade=(rows[0], rows[1]))

    def _objects(self, index: int) -> Tuple[List[_Object], _Object]:
        """Lay out everything drawn over the water, far to near, and the target among them.

        A layout made by :meth:`geometry` is kept for :meth:`render`.
        """
        cached = self._layouts.pop(index, None)
        if cached is not None:
            return cached
        plan = self.plan
        target = self._vessel(plan.target, index)
        objects = [target] + [self._vessel(track, index) for track in plan.others]
        crest = self._crest(target, index)
        if crest is not None:
            objects.append(crest)
        objects.sort(key=lambda o: -o.distance)
        return objects, target

    def _layout(self, index: int) -> Tuple[List[_Object], _Object]:
        layout = self._objects(index)
        self._layouts[index] = layout
        return layout

    # --- geometry truth -------------------------------------------------------------------

    def geometry(self, index: int) -> Geometry:
        """Measure the target's box and visibility in frame ``index`` (paints no pixels)."""
        objects, target = self._layout(index)
        return self._geometry(index, objects, target, rasterise(target.polygons, target.colours))

    def first(self) -> Geometry:
        """Geometry of frame 0 (the template)."""
        if self._first is None:
            self._first = self.geometry(0)
        return self._first

    def _clear(self, objects: List[_Object], target: _Object, rect: Rect) -> np.ndarray:
        """Return the share of each pixel of ``rect`` not covered by objects in front.

        Their coverage is taken as drawn (motion blur, the crest's fading foot).
        """
        clear = np.ones((rect[3] - rect[1], rect[2] - rect[0]), np.float32)
        for other in objects:
            if other.distance < target.distance:
                pad = int(math.ceil(math.hypot(*other.blur) / 2)) + 2
                grown = (rect[0] - pad, rect[1] - pad, rect[2] + pad, rect[3] + pad)
                front = self._shape(other, grown)
                if front is not None:
                    clear *= 1.0 - front.blurred(*other.blur).alpha_in(rect)
        return clear

    @staticmethod
    def _shape(item: _Object, bounds: Rect) -> Optional[Sprite]:
        """Rasterise an object before blur and fog; a crest's foot fades into the sea."""
        if item.track is not None:
            return rasterise(item.polygons, item.colours, bounds)
        body = rasterise(item.polygons[:1], item.colours[:1], bounds)
        if body is None:
            return None
        first, last = item.fade
        rows = np.arange(body.y0, body.y0 + body.alpha.shape[0], dtype=np.float32)
        fade = np.clip((last - rows) / max(last - first, 1.0), 0.0, 1.0)[:, None]
        return Sprite(body.x0, body.y0, body.colour * fade, body.alpha * fade)

    def _geometry(self, index: int, objects: List[_Object], target: _Object,
                  sprite: Sprite) -> Geometry:
        plan = self.plan
        total = max(float(sprite.alpha.sum()), 1e-6)
        inside_rect = intersect(sprite.rect, (0, 0, plan.width, plan.height))
        in_frame = hidden = 0.0
        if inside_rect is not None:
            inside = sprite.alpha_in(inside_rect)
            in_frame = float(inside.sum())
            hidden = float((inside * (1 - self._clear(objects, target, inside_rect))).sum())
        points = np.concatenate(target.polygons)
        low = np.clip(points.min(axis=0), 0, (plan.width, plan.height))
        high = np.clip(points.max(axis=0), 0, (plan.width, plan.height))
        box = (float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1]))
        return Geometry(box, in_frame, visible=min(max((in_frame - hidden) / total, 0.0), 1.0),
                        outside=1 - in_frame / total, hidden=hidden / total,
                        blur=math.hypot(*target.blur),
                        silhouette=_silhouette(plan.target, index, target.elevation))

    # --- pixels ---------------------------------------------------------------------------

    def render(self, index: int, geometry: Optional[Geometry] = None,
               draw_target: bool = True) -> Tuple[np.ndarray, FrameTruth]:
        """Render frame ``index`` as RGB uint8 H x W x 3 and measure its truth.

        ``geometry`` is :meth:`geometry` of the frame when already known (saves recomputing).
        ``draw_target=False`` leaves the target itself out (its wake and everything else stay),
        so the target's own pixels can be told apart; the truth is the full frame's.
        """
        plan = self.plan
        objects, target = self._objects(index)
        canvas = np.empty((3, plan.height, plan.width), np.float32)
        foam = paint_background(canvas, index / plan.fps, plan.view(index), plan.waves,
                                plan.palette, plan.foam_level)
        harbour = self._harbour(index)
        if harbour is not None:
            harbour.composite(canvas)
        blur_canvas(canvas, *self._motion(index, self._screen_centre))
        self._wakes(canvas, objects, index)
        water = canvas.copy() if any(item.track is None for item in objects) else canvas
        target_sprite = rasterise(target.polygons, target.colours)
        clutter = [harbour] if harbour is not None else []
        margin = (-64, -64, plan.width + 64, plan.height + 64)
        for item in objects:
            if item is target:
                sprite = target_sprite if draw_target else None
            elif item.track is None:
                sprite = self._crest_sprite(water, item, margin)
            else:
                sprite = rasterise(item.polygons, item.colours, margin)
            if sprite is None:
                continue
            drawn = sprite.blurred(*item.blur).fogged(
                plan.palette.fog_colour, float(plan.palette.fog_alpha(item.distance)))
            if item.track is not None and item is not target:
                clutter.append(drawn)
            drawn.composite(canvas)
        if geometry is None:
            geometry = self._geometry(index, objects, target, target_sprite)
        ring = self._ring(geometry.box)
        coverage = visible = None
        if ring is not None:
            coverage = target_sprite.alpha_in(ring)
            visible = coverage * self._clear(objects, target, ring)
        light_change = self._light(canvas, index, visible, ring)
        image = to_uint8_image(canvas)
        if plan.downsample > 1:
            small = (max(int(round(plan.width / plan.downsample)), 1),
                     max(int(round(plan.height / plan.downsample)), 1))
            image = cv2.resize(cv2.resize(image, small, interpolation=cv2.INTER_AREA),
                               (plan.width, plan.height), interpolation=cv2.INTER_LINEAR)
        contrast = clutter_score = None
        if ring is not None:
            contrast = _contrast(image, visible, coverage, ring)
            clutter_score = self._clutter(foam, clutter, coverage, ring, geometry.coverage)
        return image, self._truth(index, geometry, light_change, contrast, clutter_score or 0.0)

    def _screen_centre(self, index: int) -> np.ndarray:
        """Scene point that stays at the image centre when the camera does not move."""
        view = self.plan.view(index)
        return np.array([view.width / 2.0 + view.pan, view.horizon])

    def _ring(self, box: BoxXYWH) -> Optional[Rect]:
        """Return the box grown by half its size on every side, in the image (or None)."""
        x, y, w, h = box
        rect = (int(math.floor(x - w / 2)), int(math.floor(y - h / 2)),
                int(math.ceil(x + 1.5 * w)), int(math.ceil(y + 1.5 * h)))
        return intersect(rect, (0, 0, self.plan.width, self.plan.height))

    def _harbour(self, index: int) -> Optional[Sprite]:
        plan, harbour = self.plan, self.plan.harbour
        if harbour is None:
            return None
        view = plan.view(index)
        scale = view.focal / harbour.distance
        base_u = plan.width / 2.0 + view.pan
        base_v = view.horizon + plan.eye / harbour.distance
        polygons = [view.to_image(np.array([(base_u + x * scale, base_v - z * scale)
                                            for x, z in ((left, bottom), (right, bottom),
                                                         (right, top), (left, top))]))
                    for left, right, bottom, top in harbour.blocks]
        colours = [tuple(c * max(plan.light, 0.3) for c in colour) for colour in harbour.colours]
        sprite = rasterise(polygons, colours, (0, 0, plan.width, plan.height))
        if sprite is None:
            return None
        return sprite.fogged(plan.palette.fog_colour,
                             float(plan.palette.fog_alpha(harbour.distance)))

    def _wakes(self, canvas: np.ndarray, objects: List[_Object], index: int) -> None:
        """Foam behind the moving vessels, on the water under every vessel."""
        plan = self.plan
        bounds = (0, 0, plan.width, plan.height)
        view = plan.view(index)
        for item in objects:
            if item.track is None:
                continue
            polygons, opacities = wake_polygons(
                item.track.model, float(item.track.yaw[index]), item.elevation, item.pixels,
                item.anchor, float(item.track.wake[index]))
            fog = float(plan.palette.fog_alpha(item.distance))
            for polygon, opacity in zip(polygons, opacities):
                sprite = rasterise([view.to_image(polygon)], [plan.palette.foam], bounds,
                                   opacity * (0.4 + 0.6 * plan.light))
                if sprite is not None:
                    sprite.fogged(plan.palette.fog_colour, fog).composite(canvas)

    def _crest_sprite(self, background: np.ndarray, crest: _Object, bounds: Rect
                      ) -> Optional[Sprite]:
        """Draw the crest: the water below lifted up, foam along the top, foot fading out.

        ``background`` is the canvas before any vessel was drawn (the texture source).
        """
        body = self._shape(crest, bounds)
        if body is None:
            return None
        foam = rasterise(crest.polygons[1:], crest.colours[1:], body.rect)
        first, last = crest.fade
        height, width = body.alpha.shape
        lift = int(round(last - first))
        rows = np.clip(np.arange(body.y0, body.y0 + height) + lift, 0, background.shape[1] - 1)
        cols = np.clip(np.arange(body.x0, body.x0 + width), 0, background.shape[2] - 1)
        water = background[:, rows][:, :, cols] * 0.92
        if foam is not None:
            white = np.asarray(self.plan.palette.foam, np.float32)[:, None, None]
            water += (white - water) * (0.45 * foam.alpha_in(body.rect))
        return Sprite(body.x0, body.y0, water * body.alpha, body.alpha)

    def _light_field(self, index: int, rect: Rect) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Cloud-shadow gain (1 x w) and glare opacity (h x w or None) over ``rect``."""
        plan = self.plan
        depth, soft, direction = plan.shadow
        columns = np.arange(rect[0], rect[2], dtype=np.float32)[None, :]
        gain = np.ones_like(columns)
        if depth != 0:
            x = columns if direction > 0 else plan.width - columns
            leading, trailing = plan.shadow_edges[index]
            covered = (np.clip((leading - x) / soft + 0.5, 0, 1)
                       - np.clip((trailing - x) / soft + 0.5, 0, 1))
            gain = 1.0 - depth * covered
        dx, dy, radius, strength = plan.glare[index]
        if strength <= 0:
            return gain, None
        anchor = plan.view(index).to_image(self._anchor(plan.target, index)[0])
        rows = np.arange(rect[1], rect[3], dtype=np.float32)[:, None]
        distance2 = (columns - anchor[0] - dx) ** 2 + (rows - anchor[1] - dy) ** 2
        return gain, strength * np.exp(-distance2 / (2 * radius * radius))

    @staticmethod
    def _apply_light(planes: np.ndarray, gain: np.ndarray, glare: Optional[np.ndarray]) -> None:
        for plane in planes:
            plane *= gain
            if glare is not None:
                plane += (255.0 - plane) * glare

    def _light(self, canvas: np.ndarray, index: int, visible: Optional[np.ndarray],
               ring: Optional[Rect]) -> float:
        """Light the canvas; return the target's relative luminance change.

        The change compares the target's visible pixels under this frame's light with the same
        pixels under the first frame's light.
        """
        plan = self.plan
        frame = (0, 0, plan.width, plan.height)
        before = canvas[(slice(None),) + _rect_slices(ring)].copy() if ring else None
        gain, glare = self._light_field(index, frame)
        if glare is not None or np.any(gain != 1.0):
            self._apply_light(canvas, gain, glare)
            np.clip(canvas, 0.0, 255.0, out=canvas)
        if before is None or visible is None or visible.sum() < 1.0:
            return 0.0
        reference = before
        gain0, glare0 = self._light_field(0, ring)
        self._apply_light(reference, gain0, glare0)
        now = canvas[(slice(None),) + _rect_slices(ring)]
        luma_now = float(np.tensordot(_LUMA, now, axes=1).ravel() @ visible.ravel())
        luma_then = float(np.tensordot(_LUMA, np.clip(reference, 0, 255), axes=1).ravel()
                          @ visible.ravel())
        return abs(luma_now / max(luma_then, 1e-6) - 1.0)

    def _clutter(self, foam: np.ndarray, sprites: List[Sprite], coverage: np.ndarray,
                 ring: Rect, target_pixels: float) -> float:
        """Foam, harbour and other vessels around the target, in units of the target's size."""
        around = foam[_rect_slices(ring)].copy()
        for sprite in sprites:
            np.maximum(around, sprite.alpha_in(ring), out=around)
        return float((around * (1.0 - coverage)).sum() / max(target_pixels, 1.0))

    def _truth(self, index: int, geometry: Geometry, light_change: float,
               contrast: Optional[float], clutter: float) -> FrameTruth:
        plan, rules = self.plan, self.rules
        first = self.first() if index else geometry
        area = geometry.box[2] * geometry.box[3]
        first_area = first.box[2] * first.box[3]
        ratio = area / first_area if first_area > 0 else 1.0
        iou = _iou(geometry.silhouette, first.silhouette)
        effective = area / plan.downsample ** 2
        flags = {
            'motion_blur': geometry.blur >= rules.motion_blur * plan.width,
            'illumination_change': light_change >= rules.illumination,
            'scale_variation': not 1 / rules.scale_ratio <= ratio <= rules.scale_ratio,
            'variance_in_appearance': iou < rules.appearance_iou,
            'partial_visibility': label_files(geometry, rules)[1],
            'occlusion': geometry.hidden > rules.occlusion_hidden,
            'background_clutter': clutter >= rules.clutter,
            'low_resolution': effective < rules.low_resolution_area,
            'low_contrast_object': contrast is not None and contrast < rules.low_contrast,
        }
        absent, _, cover = label_files(geometry, rules)
        return FrameTruth(geometry, light_change, contrast, clutter, iou, effective, flags,
                          absent, cover)


__all__ = ['FrameTruth', 'Geometry', 'LabelRules', 'SceneRenderer', 'label_files']
