"""Training and inference see the same pixels: every supported encoding and both compressed
formats, written to a demonstration bag and decoded by the dataset (training's path), and sent as
rclpy messages through policy_node's decode_image (inference's path), give identical arrays at
the checkpoint's image size (resized: the source is larger)."""
import numpy as np
import pytest

pytest.importorskip('rclpy')
from dp_common.bags import BagWriter, msgs, typestore  # noqa: E402
from dp_common.images import (compressed_fields, image_fields, numpy_to_image,  # noqa: E402
                              rgb8_to_compressed)
from dp_policy.data.dataset import DatasetConfig, decode_bag  # noqa: E402
from dp_policy_node.messages import decode_image  # noqa: E402

NS = 1_000_000_000
T0 = 100 * NS
SRC_HW, HW = (30, 40), (12, 16)
ENCODINGS = ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', 'rgb16', 'bgr16', 'rgba16',
             'bgra16', '8UC1', '8UC3', '8UC4', '16UC1', '16UC3', '16UC4']
COMPRESSED = ['png', 'jpeg']


def source(encoding: str, seed: int) -> np.ndarray:
    from dp_common.images import encoding_info
    dtype, channels = encoding_info(encoding)
    rng = np.random.default_rng(seed)
    hi = 256 if np.dtype(dtype).itemsize == 1 else 65536
    shape = SRC_HW + ((channels,) if channels > 1 else ())
    return rng.integers(0, hi, shape).astype(dtype)


def test_dataset_and_node_decode_identically(tmp_path):
    store = typestore()
    cams, node_msgs = {}, {}
    with BagWriter(tmp_path / 'demo', 'sqlite3', store) as w:
        for k in range(21):   # 2 s of joint states and commands at 10 Hz
            t = T0 + k * NS // 10
            w.write('/joint_states', msgs.joint_state(t, ['a'], [0.01 * k], store=store), t)
            w.write('/commands', msgs.float64_multi_array([0.01 * k], store), t)
        for i, name in enumerate(ENCODINGS + COMPRESSED):
            if name in COMPRESSED:
                rgb = source('rgb8', i)
                topic = f'/cam_{name}/image_raw/compressed'
                fields = compressed_fields(rgb, name, quality=90)
                node_msgs[name] = (rgb8_to_compressed(rgb, name, quality=90), 'compressed')
            else:
                arr = source(name, i)
                topic = f'/cam_{name}/image_raw'
                fields = image_fields(arr, name)
                node_msgs[name] = (numpy_to_image(arr, name), 'raw')
            make = msgs.compressed_image if name in COMPRESSED else msgs.image
            for k in range(21):   # the same frame every 100 ms
                t = T0 + k * NS // 10
                w.write(topic, make(t, fields, store=store), t)
            cams[name.lower()] = topic
    cfg = DatasetConfig(joint_names=['a'], cameras=cams, command_topic='/commands',
                        command_joint_names=['a'], image_hw=HW)
    (episode,) = decode_bag(tmp_path / 'demo', cfg)
    for name, (msg, transport) in node_msgs.items():
        trained = episode.images[name.lower()][0]
        inferred = decode_image(msg, transport, HW, resize=True)
        assert trained.shape == HW + (3,) and trained.dtype == np.uint8
        np.testing.assert_array_equal(inferred, trained, err_msg=name)
        assert np.all(episode.images[name.lower()] == trained), name
