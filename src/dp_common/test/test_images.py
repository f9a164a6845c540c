"""Tests of dp_common.images against cv_bridge's documented behaviour (byte level), round trips,
padded rows, big-endian data, compressed images, and messages from rclpy and rosbags."""
import io
from types import SimpleNamespace

import numpy as np
import pytest

from dp_common.images import (ImageFormatError, UnsupportedEncodingError, compressed_fields,
                              compressed_to_rgb8, encoding_info, image_fields, image_to_numpy,
                              image_to_rgb8, numpy_to_image, resize_rgb8, rgb8_to_compressed)


def _msg(height, width, encoding, step, data, is_bigendian=0):
    return SimpleNamespace(height=height, width=width, encoding=encoding, step=step,
                           data=bytes(data), is_bigendian=is_bigendian)


def _padded(arr, encoding, pad, big=False):
    """A message whose rows carry `pad` extra bytes (filled with 0xEE), built byte by byte."""
    dt = arr.dtype.newbyteorder('>' if big else '<')
    rows = [np.ascontiguousarray(r).astype(dt).tobytes() + b'\xee' * pad for r in arr]
    return _msg(arr.shape[0], arr.shape[1], encoding, len(rows[0]), b''.join(rows), int(big))


RNG = np.random.default_rng(0)
CASES = [
    ('rgb8', RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)),
    ('bgr8', RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)),
    ('rgba8', RNG.integers(0, 256, (3, 2, 4), dtype=np.uint8)),
    ('bgra8', RNG.integers(0, 256, (3, 2, 4), dtype=np.uint8)),
    ('mono8', RNG.integers(0, 256, (3, 7), dtype=np.uint8)),
    ('8UC1', RNG.integers(0, 256, (3, 7), dtype=np.uint8)),
    ('8UC3', RNG.integers(0, 256, (2, 3, 3), dtype=np.uint8)),
    ('mono16', RNG.integers(0, 65536, (3, 4), dtype=np.uint16)),
    ('16UC1', RNG.integers(0, 65536, (3, 4), dtype=np.uint16)),
    ('rgb16', RNG.integers(0, 65536, (2, 2, 3), dtype=np.uint16)),
    ('32FC1', RNG.standard_normal((2, 3)).astype(np.float32)),
]


@pytest.mark.parametrize('encoding,arr', CASES, ids=[c[0] for c in CASES])
def test_round_trip_fields(encoding, arr):
    f = image_fields(arr, encoding)
    assert f['step'] == arr.shape[1] * arr.itemsize * (1 if arr.ndim == 2 else arr.shape[2])
    assert f['is_bigendian'] == 0
    back = image_to_numpy(SimpleNamespace(**f))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


@pytest.mark.parametrize('pad', [1, 2, 5, 16])
@pytest.mark.parametrize('encoding,arr', CASES, ids=[c[0] for c in CASES])
def test_padded_rows_are_dropped(encoding, arr, pad):
    # Padding that is not a multiple of the pixel size too (cv_bridge's Python layer misreads it).
    msg = _padded(arr, encoding, pad)
    assert msg.step == arr.shape[1] * arr.itemsize * (1 if arr.ndim == 2 else arr.shape[2]) + pad
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


@pytest.mark.parametrize('encoding', ['mono16', '16UC1'])
def test_big_endian_16bit(encoding):
    arr = np.array([[0x0102, 0xFF00], [0x00FF, 0xABCD]], dtype=np.uint16)
    msg = _msg(2, 2, encoding, 4, b'\x01\x02\xff\x00\x00\xff\xab\xcd', is_bigendian=1)
    out = image_to_numpy(msg)
    assert out.dtype == np.dtype('uint16') and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    little = _msg(2, 2, encoding, 4, b'\x02\x01\x00\xff\xff\x00\xcd\xab', is_bigendian=0)
    np.testing.assert_array_equal(image_to_numpy(little), arr)
    padded = _padded(arr, encoding, 3, big=True)
    np.testing.assert_array_equal(image_to_numpy(padded), arr)


def test_big_endian_array_to_message():
    arr = np.array([[1, 2]], dtype='>u2')
    f = image_fields(arr, 'mono16')
    assert f['is_bigendian'] == 1 and bytes(f['data']) == b'\x00\x01\x00\x02'
    np.testing.assert_array_equal(image_to_numpy(SimpleNamespace(**f)), [[1, 2]])


def test_rgb8_byte_level_cv_bridge():
    # One 2x1 image per encoding, bytes as a camera driver puts them on the wire.
    assert image_to_rgb8(_msg(1, 2, 'rgb8', 6, [1, 2, 3, 4, 5, 6])).tolist() == \
        [[[1, 2, 3], [4, 5, 6]]]
    assert image_to_rgb8(_msg(1, 2, 'bgr8', 6, [1, 2, 3, 4, 5, 6])).tolist() == \
        [[[3, 2, 1], [6, 5, 4]]]
    assert image_to_rgb8(_msg(1, 2, 'rgba8', 8, [1, 2, 3, 9, 4, 5, 6, 9])).tolist() == \
        [[[1, 2, 3], [4, 5, 6]]]
    assert image_to_rgb8(_msg(1, 2, 'bgra8', 8, [1, 2, 3, 9, 4, 5, 6, 9])).tolist() == \
        [[[3, 2, 1], [6, 5, 4]]]
    assert image_to_rgb8(_msg(1, 2, 'mono8', 2, [7, 200])).tolist() == \
        [[[7, 7, 7], [200, 200, 200]]]
    # cv_bridge leaves an untyped 3-channel image in its order ("same format")
    assert image_to_rgb8(_msg(1, 2, '8UC3', 6, [1, 2, 3, 4, 5, 6])).tolist() == \
        [[[1, 2, 3], [4, 5, 6]]]


def test_16bit_to_rgb8_scales_like_cv_bridge():
    # cv_bridge: convertTo(CV_8U, 255/65535) == round(v / 257)
    v = np.array([[0, 128, 129, 257, 385, 386, 32896, 65535]], dtype=np.uint16)
    expect = [0, 0, 1, 1, 1, 2, 128, 255]
    for enc in ('mono16', '16UC1'):
        out = image_to_rgb8(SimpleNamespace(**image_fields(v, enc)))
        assert out.dtype == np.uint8 and out.shape == (1, 8, 3)
        assert out[0, :, 0].tolist() == expect
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    bgr16 = np.zeros((1, 1, 3), np.uint16)
    bgr16[0, 0] = [65535, 257, 0]
    assert image_to_rgb8(SimpleNamespace(**image_fields(bgr16, 'bgr16'))).tolist() == [[[0, 1, 255]]]


def test_errors_name_the_problem():
    with pytest.raises(UnsupportedEncodingError, match="'yuv422'"):
        image_to_numpy(_msg(1, 2, 'yuv422', 4, [0] * 4))
    with pytest.raises(UnsupportedEncodingError, match='32FC1'):
        image_to_rgb8(SimpleNamespace(**image_fields(np.zeros((2, 2), np.float32), '32FC1')))
    with pytest.raises(ImageFormatError, match=r'data has 11 bytes, step \* height = 6 \* 2 = 12'):
        image_to_numpy(_msg(2, 2, 'rgb8', 6, [0] * 11))
    with pytest.raises(ImageFormatError, match='step 5 is less than'):
        image_to_numpy(_msg(2, 2, 'rgb8', 5, [0] * 12))
    with pytest.raises(ImageFormatError, match="'rgb8' needs 3 channel"):
        image_fields(np.zeros((2, 2), np.uint8), 'rgb8')
    with pytest.raises(ImageFormatError, match="'mono16' needs 1 channel"):
        image_fields(np.zeros((2, 2), np.uint8), 'mono16')
    assert issubclass(UnsupportedEncodingError, ValueError)
    assert issubclass(ImageFormatError, ValueError)
    assert encoding_info('16UC1') == (np.dtype('uint16'), 1)


def test_longer_data_is_accepted():
    # cv_bridge builds the array over a larger buffer without complaint.
    arr = image_to_numpy(_msg(1, 2, 'mono8', 2, [5, 6, 7, 8]))
    assert arr.tolist() == [[5, 6]]


def test_rclpy_message_round_trip():
    pytest.importorskip('sensor_msgs.msg')
    arr = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    msg = numpy_to_image(arr, 'bgr8', stamp=12.25, frame_id='cam')
    assert (msg.height, msg.width, msg.step, msg.encoding) == (6, 5, 15, 'bgr8')
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == \
        (12, 250_000_000, 'cam')
    np.testing.assert_array_equal(image_to_numpy(msg), arr)
    np.testing.assert_array_equal(image_to_rgb8(msg), arr[:, :, ::-1])
    m16 = numpy_to_image(np.array([[1, 65535]], np.uint16), 'mono16')
    assert bytes(m16.data) == b'\x01\x00\xff\xff' and m16.is_bigendian == 0


def test_rosbags_message():
    from rosbags.typesys import Stores, get_typestore
    ts = get_typestore(Stores.ROS2_HUMBLE)
    Image = ts.types['sensor_msgs/msg/Image']
    Header = ts.types['std_msgs/msg/Header']
    Time = ts.types['builtin_interfaces/msg/Time']
    arr = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    rows = np.concatenate([arr.reshape(3, 12), np.zeros((3, 4), np.uint8)], axis=1)
    msg = Image(header=Header(stamp=Time(sec=1, nanosec=0), frame_id='c'), height=3, width=4,
                encoding='rgb8', is_bigendian=0, step=16, data=rows.reshape(-1))
    back = ts.deserialize_cdr(ts.serialize_cdr(msg, Image.__msgtype__), Image.__msgtype__)
    np.testing.assert_array_equal(image_to_rgb8(back), arr)


def test_compressed_png_exact_and_jpeg_close():
    arr = np.zeros((16, 24, 3), np.uint8)
    arr[:, :12] = [200, 30, 10]   # red-ish left half: a swapped R/B would show
    arr[:, 12:] = [10, 40, 220]
    f = compressed_fields(arr, 'png')
    assert f['format'] == 'rgb8; png compressed bgr8'
    for fmt in (f['format'], 'png', 'bgr8; png compressed bgr8'):
        np.testing.assert_array_equal(compressed_to_rgb8(SimpleNamespace(format=fmt, data=f['data'])), arr)
    j = compressed_fields(arr, 'jpeg', quality=95)
    out = compressed_to_rgb8(SimpleNamespace(format='jpeg', data=j['data']))
    assert out.shape == arr.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - arr.astype(int)).mean() < 4


def test_compressed_mono_and_16bit_png():
    from PIL import Image as PILImage
    mono = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    b = io.BytesIO()
    PILImage.fromarray(mono, 'L').save(b, 'PNG')
    out = compressed_to_rgb8(SimpleNamespace(format='mono8; png compressed mono8', data=b.getvalue()))
    np.testing.assert_array_equal(out, np.repeat(mono[:, :, None], 3, axis=2))
    deep = np.array([[0, 129, 32896, 65535]], dtype=np.uint16)
    b = io.BytesIO()
    PILImage.fromarray(deep).save(b, 'PNG')
    out = compressed_to_rgb8(SimpleNamespace(format='mono16; png compressed mono16', data=b.getvalue()))
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    # compressedDepth: a 12-byte config header before the PNG stream
    out = compressed_to_rgb8(SimpleNamespace(format='16UC1; compressedDepth png',
                                             data=b'\0' * 12 + b.getvalue()))
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]


def test_compressed_errors():
    with pytest.raises(ImageFormatError, match=r"format 'jpeg', 5 bytes"):
        compressed_to_rgb8(SimpleNamespace(format='jpeg', data=b'abcde'))
    with pytest.raises(UnsupportedEncodingError, match='tiff'):
        compressed_fields(np.zeros((2, 2, 3), np.uint8), 'tiff')
    with pytest.raises(ImageFormatError):
        compressed_fields(np.zeros((2, 2), np.uint8), 'png')


def test_rclpy_compressed():
    pytest.importorskip('sensor_msgs.msg')
    arr = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    msg = rgb8_to_compressed(arr, 'png', stamp=3.5)
    assert msg.format == 'rgb8; png compressed bgr8' and msg.header.stamp.sec == 3
    np.testing.assert_array_equal(compressed_to_rgb8(msg), arr)


def test_resize():
    arr = np.full((8, 12, 3), 77, np.uint8)
    out = resize_rgb8(arr, (4, 6))
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8 and (out == 77).all()
    assert resize_rgb8(arr, None) is arr and resize_rgb8(arr, (8, 12)) is arr


def test_against_cv_bridge_when_it_imports():
    cv_bridge = pytest.importorskip('cv_bridge', reason='cv_bridge is not installable here')
    bridge = cv_bridge.CvBridge()
    for encoding, arr in CASES:
        msg = numpy_to_image(arr, encoding)
        np.testing.assert_array_equal(bridge.imgmsg_to_cv2(msg, 'passthrough'), image_to_numpy(msg))
        if encoding in ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', 'rgb16'):
            np.testing.assert_array_equal(bridge.imgmsg_to_cv2(msg, 'rgb8'), image_to_rgb8(msg))


def _reference_rgb8(msg):
    """image_to_rgb8 written in numpy only, byte by byte from the passthrough array (the fast path
    goes through Pillow's unpacker)."""
    arr = image_to_numpy(msg)
    enc = msg.encoding
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, 2::-1] if enc.startswith('bgr') else arr[:, :, :3])


EIGHT_BIT = ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', '8UC1', '8UC3', '8UC4']


@pytest.mark.parametrize('pad', [0, 3])
@pytest.mark.parametrize('encoding', EIGHT_BIT)
def test_8bit_fast_path_equals_numpy_and_resize(encoding, pad):
    dtype, ch = encoding_info(encoding)
    shape = (37, 53) if ch == 1 else (37, 53, ch)
    arr = RNG.integers(0, 256, shape, dtype=np.uint8)
    msg = _padded(arr, encoding, pad)
    ref = _reference_rgb8(msg)
    out = image_to_rgb8(msg)
    assert out.dtype == np.uint8 and out.shape == (37, 53, 3) and out.flags.writeable
    np.testing.assert_array_equal(out, ref)
    # Resized in the conversion == converted, then resized (what the dataset does in training).
    for hw in [(16, 24), (37, 53), (50, 70)]:
        np.testing.assert_array_equal(image_to_rgb8(msg, resize_to=hw), resize_rgb8(ref, hw))
    # The result never aliases the message buffer.
    out[...] = 0
    np.testing.assert_array_equal(image_to_rgb8(msg), ref)


def test_resize_in_conversion_for_16bit_too():
    arr = RNG.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    msg = _padded(arr, 'bgr16', 2)
    np.testing.assert_array_equal(image_to_rgb8(msg, resize_to=(4, 5)),
                                  resize_rgb8(image_to_rgb8(msg), (4, 5)))
