"""Image conversion: every encoding against OpenCV reference results, and malformed input."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from simtrack_ros.ros import image_conversion
from simtrack_ros.ros.image_conversion import (
    compressed_to_rgb, image_to_rgb, ImageConversionError, LazyFrame, raw_pixels,
    rgb_to_image, SUPPORTED_ENCODINGS, to_rgb)

H, W = 6, 8
RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _msg(array: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Make an Image of ``array`` (H x W [x C]) with ``pad`` garbage bytes after every row."""
    rows = array.reshape(array.shape[0], -1)
    raw = rows.astype(rows.dtype.newbyteorder('>' if bigendian else '<')).view(np.uint8) \
        if rows.dtype.itemsize > 1 else rows
    raw = raw.reshape(array.shape[0], -1)
    padded = np.concatenate([raw, np.full((raw.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=array.shape[0], width=array.shape[1], encoding=encoding,
                is_bigendian=int(bigendian), step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


def _references():
    bgr = cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR)
    bgra = cv2.cvtColor(RGB, cv2.COLOR_RGB2BGRA)
    rgba = cv2.cvtColor(RGB, cv2.COLOR_RGB2RGBA)
    gray = cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY)
    gray16 = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    gray16_ref = cv2.cvtColor(np.round(gray16 / 257.0).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    bayer = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    yuv = RNG.integers(16, 236, (H, W, 2), dtype=np.uint8)
    cases = [
        ('rgb8', RGB, RGB), ('bgr8', bgr, RGB), ('8UC3', bgr, RGB), ('rgba8', rgba, RGB),
        ('bgra8', bgra, RGB), ('8UC4', bgra, RGB),
        ('mono8', gray, cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)),
        ('8UC1', gray, cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)),
        ('mono16', gray16, gray16_ref), ('16UC1', gray16, gray16_ref),
        ('bayer_rggb8', bayer, cv2.cvtColor(bayer, cv2.COLOR_BayerBG2RGB)),
        ('bayer_bggr8', bayer, cv2.cvtColor(bayer, cv2.COLOR_BayerRG2RGB)),
        ('bayer_gbrg8', bayer, cv2.cvtColor(bayer, cv2.COLOR_BayerGR2RGB)),
        ('bayer_grbg8', bayer, cv2.cvtColor(bayer, cv2.COLOR_BayerGB2RGB)),
        ('yuv422', yuv, cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_UYVY)),
        ('uyvy', yuv, cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_UYVY)),
        ('yuv422_yuy2', yuv, cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_YUYV)),
        ('yuyv', yuv, cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_YUYV)),
    ]
    return {encoding: (source, expected) for encoding, source, expected in cases}


REFERENCES = _references()


def test_every_supported_encoding_has_a_reference():
    assert set(REFERENCES) == set(SUPPORTED_ENCODINGS)


@pytest.mark.parametrize('encoding', sorted(REFERENCES))
@pytest.mark.parametrize('pad', [0, 6])
def test_encoding_matches_opencv(encoding, pad):
    source, expected = REFERENCES[encoding]
    rgb = image_to_rgb(_msg(source, encoding, pad=pad))
    assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
    np.testing.assert_array_equal(rgb, expected)
    assert not rgb.flags.writeable


def test_big_endian_16_bit():
    source, expected = REFERENCES['mono16']
    np.testing.assert_array_equal(image_to_rgb(_msg(source, 'mono16', bigendian=True)),
                                  expected)


def test_bayer_pattern_names():
    """A flat colour, mosaicked in each ROS pattern, demosaics back to that colour."""
    colour = np.array([200, 90, 30], np.uint8)
    offsets = {'rggb': ((0, 0), (1, 1)), 'bggr': ((1, 1), (0, 0)),
               'gbrg': ((1, 0), (0, 1)), 'grbg': ((0, 1), (1, 0))}
    for pattern, ((ry, rx), (by, bx)) in offsets.items():
        mosaic = np.full((16, 16), colour[1], np.uint8)
        mosaic[ry::2, rx::2] = colour[0]
        mosaic[by::2, bx::2] = colour[2]
        rgb = image_to_rgb(_msg(mosaic, f'bayer_{pattern}8'))
        np.testing.assert_array_equal(rgb[4:12, 4:12], np.broadcast_to(colour, (8, 8, 3)),
                                      err_msg=pattern)


def test_yuv422_byte_order():
    """UYVY (ROS yuv422) and YUYV place luma differently: check with neutral chroma.

    OpenCV uses BT.601 video range, so grey level = 1.164 * (Y - 16).
    """
    uyvy = np.array([[[128, 50], [128, 200]]], np.uint8)       # U Y0 V Y1
    yuyv = np.array([[[50, 128], [200, 128]]], np.uint8)       # Y0 U Y1 V
    for encoding, data in (('yuv422', uyvy), ('yuv422_yuy2', yuyv)):
        rgb = image_to_rgb(_msg(data, encoding)).astype(int)
        for pixel, luma in ((0, 50), (1, 200)):
            assert abs(rgb[0, pixel] - 1.164 * (luma - 16)).max() <= 2, encoding


def test_views_share_the_message_buffer():
    for encoding in ('rgb8', 'bgr8', 'rgba8', 'bgra8'):
        source, _ = REFERENCES[encoding]
        msg = _msg(source, encoding, pad=3)
        rgb = image_to_rgb(msg)
        assert np.shares_memory(rgb, np.frombuffer(msg.data, np.uint8)), encoding


@pytest.mark.parametrize('change, reason', [
    ({'step': W * 3 - 1}, 'step 23 is smaller than one row'),
    ({'height': H + 1}, r'expected step \* height = 24 \* 7 = 168'),
    ({'width': 0}, 'zero size'),
    ({'height': 0, 'data': b''}, 'zero size'),
    ({'encoding': 'hsv8'}, "unsupported image encoding 'hsv8'"),
    ({'encoding': ''}, "unsupported image encoding ''"),
])
def test_malformed_images(change, reason):
    msg = _msg(RGB, 'rgb8')
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageConversionError, match=reason):
        image_to_rgb(msg)


def test_data_length_must_match():
    msg = _msg(RGB, 'rgb8')
    for data in (bytes(msg.data)[:-1], bytes(msg.data) + b'\0'):
        msg.data = data
        with pytest.raises(ImageConversionError, match=f'data has {len(data)} bytes'):
            image_to_rgb(msg)
    odd = _msg(REFERENCES['mono16'][0], 'mono16')
    odd.step, odd.data = W * 2 + 1, bytes(H * (W * 2 + 1))
    with pytest.raises(ImageConversionError, match='not a multiple'):
        raw_pixels(odd)


def test_compressed_images():
    bgr = cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR)
    for extension in ('.png', '.jpg'):
        data = cv2.imencode(extension, bgr)[1]
        msg = CompressedImage(format=extension[1:], data=data.tobytes())
        expected = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(compressed_to_rgb(msg), expected)
        np.testing.assert_array_equal(to_rgb(msg), expected)
    np.testing.assert_array_equal(
        compressed_to_rgb(CompressedImage(format='png', data=cv2.imencode('.png', bgr)[1]
                                          .tobytes())), RGB)
    for msg, reason in ((CompressedImage(format='jpeg'), 'has no data'),
                        (CompressedImage(format='jpeg', data=b'garbage'), 'could not be decoded'),
                        (CompressedImage(format='16UC1; compressedDepth', data=b'x'),
                         'compressedDepth')):
        with pytest.raises(ImageConversionError, match=reason):
            compressed_to_rgb(msg)


def test_rgb_to_image_round_trip():
    header = Header(frame_id='cam')
    header.stamp.sec = 3
    msg = rgb_to_image(RGB[:, ::-1], header)
    assert msg.header == header and msg.encoding == 'rgb8' and msg.step == W * 3
    np.testing.assert_array_equal(image_to_rgb(msg), RGB[:, ::-1])
    with pytest.raises(ValueError):
        rgb_to_image(RGB[..., 0])


def test_lazy_frame_converts_once_and_caches_errors():
    msg = _msg(RGB, 'rgb8')
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 5
    lazy = LazyFrame(msg)
    assert lazy.stamp_ns == 12_000_000_005 and lazy.header is msg.header
    assert lazy.rgb() is lazy.rgb()
    bad = LazyFrame(Image(encoding='rgb8'))
    for _ in range(2):
        with pytest.raises(ImageConversionError, match='zero size'):
            bad.rgb()


@pytest.mark.skipif(not image_conversion.cv_bridge_available(),
                    reason='ROS 2 cv_bridge is not importable here (it is not on PyPI; it '
                           'comes with a ROS 2 install)')
@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16',
                                      'bayer_rggb8', 'bayer_bggr8', 'bayer_gbrg8',
                                      'bayer_grbg8', 'yuv422'])
def test_matches_cv_bridge(encoding):
    from cv_bridge import CvBridge
    source, _ = REFERENCES[encoding]
    msg = _msg(source, encoding, pad=4)
    expected = CvBridge().imgmsg_to_cv2(msg, desired_encoding='rgb8')
    np.testing.assert_array_equal(image_to_rgb(msg), expected)
