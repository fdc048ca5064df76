"""sensor_msgs/Image and CompressedImage to RGB uint8 arrays, and RGB arrays back to Image.

Raw images are read with ``np.frombuffer`` on ``msg.data``, honouring ``step`` (row padding) and
``is_bigendian``. Where the encoding allows, the result is a zero-copy **read-only view** of the
message buffer (rgb8, rgba8: a slice; bgr8, bgra8, 8UC3, 8UC4: a channel-reversed view), so it
may be non-contiguous: use ``np.ascontiguousarray`` before handing
it to OpenCV. mono, 16-bit, Bayer and YUV 4:2:2 encodings are converted with OpenCV as
cv_bridge does. The channel-only encodings 8UC1, 8UC3, 8UC4 and 16UC1 carry no colour order,
and cv_bridge refuses to convert them to rgb8; they are read as OpenCV stores images (grey,
BGR, BGRA), which is what drivers publishing them mean in practice. Other encodings go
through ROS 2 ``cv_bridge`` when it is importable. Malformed messages raise
:class:`ImageConversionError` with the reason.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from simtrack_ros.ros.stamps import to_nanoseconds

try:  # ROS 2 cv_bridge: only on a ROS install (the PyPI 'cv-bridge' is a ROS 1 build).
    from cv_bridge import CvBridge
    _BRIDGE: Optional['CvBridge'] = CvBridge()
except Exception:  # noqa: B902 - ImportError, or a NumPy ABI mismatch inside cv_bridge
    _BRIDGE = None

#: 16-bit to 8-bit scale (as cv_bridge: full range, 65535 -> 255).
_SCALE_16_TO_8 = 255.0 / 65535.0


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB frame; the message says why."""


def cv_bridge_available() -> bool:
    """Whether ROS 2 cv_bridge could be imported."""
    return _BRIDGE is not None


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _gray(pixels: np.ndarray) -> np.ndarray:
    """H x W x 1 (uint8 or uint16) to H x W x 3 uint8 RGB (16 bit: scaled as cv_bridge)."""
    plane = np.ascontiguousarray(pixels[..., 0])
    if plane.dtype != np.uint8:
        plane = cv2.convertScaleAbs(plane.astype(np.uint16, copy=False), alpha=_SCALE_16_TO_8)
    return cv2.cvtColor(plane, cv2.COLOR_GRAY2RGB)


def _cv(code: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda pixels: cv2.cvtColor(np.ascontiguousarray(pixels), code)


# encoding -> (channels, bytes per channel, conversion of the H x W x C array to RGB)
_DECODERS: Dict[str, tuple] = {
    'rgb8': (3, 1, lambda p: p),
    'bgr8': (3, 1, lambda p: p[..., ::-1]),
    '8UC3': (3, 1, lambda p: p[..., ::-1]),
    'rgba8': (4, 1, lambda p: p[..., :3]),
    'bgra8': (4, 1, lambda p: p[..., 2::-1]),
    '8UC4': (4, 1, lambda p: p[..., 2::-1]),
    'mono8': (1, 1, _gray),
    '8UC1': (1, 1, _gray),
    'mono16': (1, 2, _gray),
    '16UC1': (1, 2, _gray),
    # OpenCV names Bayer patterns after the second row: ROS rggb is OpenCV BG (as cv_bridge).
    'bayer_rggb8': (1, 1, lambda p: _cv(cv2.COLOR_BayerBG2RGB)(p[..., 0])),
    'bayer_bggr8': (1, 1, lambda p: _cv(cv2.COLOR_BayerRG2RGB)(p[..., 0])),
    'bayer_gbrg8': (1, 1, lambda p: _cv(cv2.COLOR_BayerGR2RGB)(p[..., 0])),
    'bayer_grbg8': (1, 1, lambda p: _cv(cv2.COLOR_BayerGB2RGB)(p[..., 0])),
    # ROS 'yuv422' is UYVY; 'yuv422_yuy2' is YUYV.
    'yuv422': (2, 1, _cv(cv2.COLOR_YUV2RGB_UYVY)),
    'uyvy': (2, 1, _cv(cv2.COLOR_YUV2RGB_UYVY)),
    'yuv422_yuy2': (2, 1, _cv(cv2.COLOR_YUV2RGB_YUYV)),
    'yuyv': (2, 1, _cv(cv2.COLOR_YUV2RGB_YUYV)),
}

#: Encodings converted by this module itself (others need cv_bridge).
SUPPORTED_ENCODINGS = tuple(_DECODERS)


def raw_pixels(msg: Image) -> np.ndarray:
    """Return an ``H x W x C`` read-only view of a raw image's pixels (dtype from the encoding).

    Raises ImageConversionError for an unknown encoding, a zero size, ``step`` smaller than
    a row, or ``data`` whose length is not ``step * height``.
    """
    if msg.encoding not in _DECODERS:
        raise ImageConversionError(
            f'unsupported image encoding {msg.encoding!r}; supported: '
            f'{", ".join(SUPPORTED_ENCODINGS)}' +
            ('' if cv_bridge_available() else ' (install ROS 2 cv_bridge for more)'))
    channels, depth, _ = _DECODERS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f'image has zero size ({width}x{height})')
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageConversionError(
            f'step {step} is smaller than one row of {width} {msg.encoding} pixels '
            f'({row_bytes} bytes)')
    if step % depth:
        raise ImageConversionError(f'step {step} is not a multiple of the {depth}-byte '
                                   f'channel size of {msg.encoding}')
    size = len(msg.data)
    if size != step * height:
        raise ImageConversionError(
            f'data has {size} bytes, expected step * height = {step} * {height} = '
            f'{step * height}')
    dtype = np.dtype(np.uint8) if depth == 1 else np.dtype('>u2' if msg.is_bigendian else '<u2')
    rows = np.frombuffer(msg.data, dtype=dtype).reshape(height, step // depth)
    pixels = rows[:, :width * channels].reshape(height, width, channels)
    return _readonly(pixels)


def image_to_rgb(msg: Image) -> np.ndarray:
    """Convert a sensor_msgs/Image to an RGB uint8 ``H x W x 3`` frame.

    The frame is read-only and may be a view of ``msg.data``. Raises ImageConversionError for a
    malformed message (see :func:`raw_pixels`).
    """
    if msg.encoding not in _DECODERS and _BRIDGE is not None:
        try:
            rgb = _BRIDGE.imgmsg_to_cv2(msg, desired_encoding='rgb8')
        except Exception as exc:  # noqa: B902 - cv_bridge raises CvBridgeError and others
            raise ImageConversionError(f'cv_bridge cannot convert {msg.encoding!r}: {exc}'
                                       ) from None
        return _readonly(np.ascontiguousarray(rgb))
    pixels = raw_pixels(msg)
    return _readonly(_DECODERS[msg.encoding][2](pixels))


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG, ...) to a read-only RGB frame."""
    if 'compresseddepth' in msg.format.lower():
        raise ImageConversionError(f'compressedDepth images are not supported '
                                   f'(format {msg.format!r})')
    if len(msg.data) == 0:
        raise ImageConversionError(f'compressed image (format {msg.format!r}) has no data')
    bgr = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageConversionError(
            f'compressed image (format {msg.format!r}, {len(msg.data)} bytes) could not be '
            'decoded')
    return _readonly(bgr[..., ::-1])


def to_rgb(msg) -> np.ndarray:
    """Convert an Image or CompressedImage message to an RGB frame."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg)
    return image_to_rgb(msg)


def rgb_to_image(rgb: np.ndarray, header: Optional[Header] = None) -> Image:
    """Build an ``rgb8`` sensor_msgs/Image of an ``H x W x 3`` uint8 array with ``header``."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'expected an H x W x 3 uint8 array, got {rgb.dtype} {rgb.shape}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = 'rgb8'
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


class LazyFrame:
    """An Image or CompressedImage message whose RGB frame is converted on first use.

    The conversion (or its error) is cached, so the frame buffer can hold every received
    message at no cost and only the frames that are used get converted.
    """

    __slots__ = ('msg', 'stamp_ns', '_rgb', '_error')

    def __init__(self, msg) -> None:
        self.msg = msg
        self.stamp_ns = to_nanoseconds(msg.header.stamp)
        self._rgb: Optional[np.ndarray] = None
        self._error: Optional[str] = None

    @property
    def header(self) -> Header:
        """Return the header of the source image."""
        return self.msg.header

    @property
    def compressed(self) -> bool:
        """Whether the source is a CompressedImage."""
        return isinstance(self.msg, CompressedImage)

    def rgb(self) -> np.ndarray:
        """Return the RGB frame (read-only); ImageConversionError if the message is malformed."""
        if self._rgb is None and self._error is None:
            try:
                self._rgb = to_rgb(self.msg)
            except ImageConversionError as exc:
                self._error = str(exc)
        if self._error is not None:
            raise ImageConversionError(self._error)
        return self._rgb
