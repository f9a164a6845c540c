"""Observation alignment and bounded histories (dp_policy_node.observation), no ROS needed."""
import subprocess
import sys
import threading

import numpy as np
import pytest

from dp_policy_node.observation import (JOINT_STREAM, ClockJumpDetector, ImageRejected,
                                        Observation, ObservationHistory, Skip, StampedRing)

NS = 1_000_000_000
T = 1_700_000_000 * NS     # a realistic wall-clock time in ns


def img(value, hw=(4, 6)):
    return np.full((*hw, 3), value, dtype=np.uint8)


def make(n_obs=2, dt=0.1, max_age=0.5, cams=('cam',), **kw):
    return ObservationHistory(3, list(cams), n_obs, dt, max_age, image_hw=(4, 6),
                              labels={'cam': '/cam/image_raw', JOINT_STREAM: '/joint_states'}, **kw)


def test_core_module_does_not_import_rclpy():
    code = ('import sys, dp_policy_node.observation; '
            'assert "rclpy" not in sys.modules, "observation imports rclpy"')
    subprocess.run([sys.executable, '-c', code], check=True)


def test_grid_uses_nearest_stamps_not_arrival_order():
    h = make(n_obs=3)
    # joints at 100 Hz with 3 ms offset, inserted in scrambled order
    stamps = [T + i * 10_000_000 + 3_000_000 for i in range(40)]
    rng = np.random.default_rng(0)
    for i in rng.permutation(len(stamps)):
        assert h.insert_joint_state(stamps[i], [i, -i, 0.5 * i], now_ns=T + NS // 2) == ''
    # camera at 10 Hz: the newest frame (t0) is T+0.3 s, inserted before the older ones
    for k in (3, 0, 2, 1):
        assert h.insert_image('cam', T + k * 100_000_000, img(k), now_ns=T + NS // 2) == ''
    obs = h.sample(now_ns=T + 350_000_000)
    assert isinstance(obs, Observation), obs
    assert obs.stamp_ns == T + 300_000_000          # the newest stamp all streams reached
    np.testing.assert_array_equal(obs.grid_ns, T + np.array([100, 200, 300]) * 1_000_000)
    # joint sample i has stamp T + 10 ms * i + 3 ms: nearest to 100/200/300 ms are i = 10, 20, 30
    np.testing.assert_array_equal(obs.state[:, 0], [10, 20, 30])
    assert obs.state.dtype == np.float32 and obs.state.shape == (3, 3)
    assert obs.images['cam'].shape == (3, 4, 6, 3)
    np.testing.assert_array_equal(obs.images['cam'][:, 0, 0, 0], [1, 2, 3])


def test_missing_stale_and_misaligned_streams_give_reasons():
    h = make()
    r = h.sample(T)
    assert isinstance(r, Skip) and r.reason == 'missing:/joint_states' and r.counter == 'missing'
    h.insert_joint_state(T, [0, 0, 0])
    assert h.sample(T).reason == 'missing:/cam/image_raw'
    h.insert_image('cam', T, img(0))
    # only one sample per stream: the grid point t0 - dt has nothing within dt/2
    assert h.sample(T).reason == 'misaligned:/joint_states'
    h.insert_joint_state(T - 100_000_000, [1, 1, 1])
    assert h.sample(T).reason == 'misaligned:/cam/image_raw'
    h.insert_image('cam', T - 90_000_000, img(1))   # 10 ms off the grid: within tolerance
    assert isinstance(h.sample(T + 100_000_000), Observation)
    # the camera stops while joints go on: t0 ages past max_age
    h.insert_joint_state(T + 550_000_000, [2, 2, 2])
    r = h.sample(T + 600_000_000)
    assert r.reason == 'stale:/cam/image_raw' and r.counter == 'stale'


def test_joint_stream_lagging_is_named_stale():
    h = make()
    for k in range(3):
        h.insert_image('cam', T + k * 100_000_000, img(k))
    h.insert_joint_state(T, [0, 0, 0])
    h.insert_joint_state(T - 100_000_000, [0, 0, 0])
    assert h.sample(T + 800_000_000).reason == 'stale:/joint_states'


def test_bad_stamps_and_values_are_rejected_on_insert():
    h = make(max_future_s=0.05)
    now = T
    assert h.insert_joint_state(0, [0, 0, 0], now) == 'zero_stamp'
    assert h.insert_joint_state(T + 60_000_000, [0, 0, 0], now) == 'future_stamp'
    assert h.insert_joint_state(T + 40_000_000, [0, 0, 0], now) == ''
    assert h.insert_joint_state(T - 10 * NS, [0, 0, 0], now) == 'old_stamp'
    assert h.insert_joint_state(T, [0, np.nan, 0], now) == 'nan_position'
    assert h.insert_joint_state(T, [0, np.inf, 0], now) == 'nan_position'
    assert h.insert_joint_state(T, [0, 0], now) == 'joint_count'
    assert h.insert_joint_state(T, [0, 0, 0], now_ns=0) == 'no_clock'
    assert h.insert_image('cam', T, img(0, hw=(5, 5)), now) == 'wrong_image_size'
    assert h.insert_image('cam', T, np.zeros((4, 6, 3), np.float32), now) == 'bad_image_format'
    assert h.sizes() == {JOINT_STREAM: 1, 'cam': 0}
    with pytest.raises(KeyError):
        h.insert_image('nope', T, img(0), now)


def test_lazy_images_are_decoded_once_and_only_when_chosen():
    h = make()
    calls = []

    def lazy(k):
        def decode():
            calls.append(k)
            return img(k)
        return decode

    for k in range(10):   # 10 frames at 100 Hz; only the two on the grid get decoded
        h.insert_image('cam', T + k * 10_000_000, lazy(k))
    for k in range(10):
        h.insert_joint_state(T + k * 10_000_000, [k, 0, 0])
    obs = h.sample(T + 100_000_000)
    assert isinstance(obs, Observation)
    assert sorted(calls) == [0, 9]
    assert obs.stamp_ns == T + 90_000_000
    np.testing.assert_array_equal(obs.images['cam'][:, 0, 0, 0], [0, 9])  # t0-dt -> 0 ms (nearest)
    h.sample(T + 100_000_000)
    assert len(calls) == 2, 'decoded images must be cached'


def test_image_that_fails_to_decode_is_rejected_and_dropped():
    h = make()

    def bad():
        raise ImageRejected('unsupported_encoding', 'yuv422')

    def buggy():
        raise RuntimeError('converter bug')

    h.insert_joint_state(T - 100_000_000, [0, 0, 0])
    h.insert_joint_state(T, [0, 0, 0])
    h.insert_image('cam', T - 100_000_000, img(0))
    h.insert_image('cam', T, bad)
    r = h.sample(T)
    assert r.rejected and r.counter == 'unsupported_encoding'
    assert r.reason == 'unsupported_encoding:/cam/image_raw'
    assert h.sizes()['cam'] == 1          # the bad frame is gone
    h.insert_image('cam', T, buggy)
    assert h.sample(T).counter == 'image_conversion_error'
    h.insert_image('cam', T, lambda: img(0, hw=(9, 9)))   # converter returns the wrong size
    assert h.sample(T).counter == 'wrong_image_size'
    h.insert_image('cam', T, lambda: img(7))
    assert isinstance(h.sample(T), Observation)


def test_memory_is_bounded_under_a_flood():
    h = make(joint_capacity=500, image_capacity=8)
    now = T
    for i in range(20_000):      # 20 s of 1 kHz joint states
        now = T + i * 1_000_000
        h.insert_joint_state(now, [i, 0, 0], now)
        if i % 33 == 0:          # 30 Hz camera
            h.insert_image('cam', now, lambda: img(1), now)
    sizes = h.sizes()
    assert sizes[JOINT_STREAM] <= 500 and sizes['cam'] <= 8
    # the time window alone bounds the joint ring (max_age + dt + tol = 0.65 s at 1 kHz)
    h2 = make()
    for i in range(5000):
        h2.insert_joint_state(T + i * 1_000_000, [i, 0, 0])
    assert h2.sizes()[JOINT_STREAM] <= 651


def test_stamped_ring_order_duplicates_and_window():
    r = StampedRing(capacity=4, window_ns=100)
    for s in (10, 30, 20, 20):
        assert r.insert(s, s)
    assert r.stamps == [10, 20, 30] and len(r) == 3
    assert r.nearest(24) == 1 and r.nearest(25) == 1 and r.nearest(26) == 2
    assert r.nearest(-5) == 0 and r.nearest(1000) == 2
    assert r.insert(200, 200)                # trims 10..99 out of the window
    assert r.stamps == [200]
    assert not r.insert(50, 50)              # older than the window: dropped
    for s in range(201, 210):
        r.insert(s, s)
    assert r.stamps == [206, 207, 208, 209]  # capacity


def test_clock_jump_detector():
    d = ClockJumpDetector(threshold_s=0.25)
    assert not d.update(10 * NS)
    assert not d.update(11 * NS)
    assert not d.update(11 * NS - 100_000_000)   # small step back: ignored
    assert d.update(5 * NS) and d.jumps == 1     # replay restart
    assert not d.update(5 * NS + 1)


def test_concurrent_inserts_and_samples():
    h = make()
    stop = threading.Event()
    errors = []

    def writer():
        i = 0
        while not stop.is_set():
            t = T + i * 5_000_000
            h.insert_joint_state(t, [i, 0, 0])
            h.insert_image('cam', t, lambda: img(3))
            i += 1

    th = threading.Thread(target=writer)
    th.start()
    try:
        for _ in range(300):
            r = h.sample(T + 10 * NS)
            if not isinstance(r, (Observation, Skip)):
                errors.append(r)
    finally:
        stop.set()
        th.join()
    assert not errors


def test_constructor_validates():
    with pytest.raises(ValueError):
        ObservationHistory(0, [], 2, 0.1, 0.5)
    with pytest.raises(ValueError):
        ObservationHistory(3, ['a', 'a'], 2, 0.1, 0.5)
    with pytest.raises(ValueError):
        ObservationHistory(3, [], 2, 0.0, 0.5)
    h = ObservationHistory(3, [], 1, 0.1, 0.5)     # state-only policy, one obs step
    h.insert_joint_state(T, [1, 2, 3])
    obs = h.sample(T)
    assert obs.state.shape == (1, 3) and obs.images == {}


def test_latest_gives_the_newest_sample_of_a_stream():
    h = make()
    assert h.latest(JOINT_STREAM) is None
    h.insert_joint_state(T + 2, [1, 2, 3])
    h.insert_joint_state(T + 1, [4, 5, 6])          # older, inserted later
    stamp, q = h.latest(JOINT_STREAM)
    assert stamp == T + 2 and q.tolist() == [1, 2, 3]


def test_end_effector_space_of_the_robot_must_share_the_checkpoints_root_frame(tmp_path):
    """An end-effector checkpoint's poses are in its URDF's root frame: a robot URDF rooted
    elsewhere is refused at configure, naming both frames."""
    import pytest as _pytest

    from dp_common.ee_space import EndEffectorSpace
    from dp_policy_node.node_config import ConfigError, PolicyNodeConfig, end_effector_space
    from dp_sim.env import default_urdf_path
    space = EndEffectorSpace(default_urdf_path(), 'tool0').to_dict()
    text = default_urdf_path().read_text()
    # the same arm without the world link: rooted at 'table'
    start = text.index('  <link name="world"/>')
    text = text.replace('  <link name="world"/>', '', 1)
    a = text.index('<joint name="world_to_table"')
    b = text.index('</joint>', a) + len('</joint>')
    text = text[:a] + text[b:]
    a = text.index('<joint name="world_to_camera"')
    b = text.index('</joint>', a) + len('</joint>')
    text = text[:a] + text[b:]
    (tmp_path / 'table.urdf').write_text(text)
    assert start > 0
    cfg = PolicyNodeConfig(checkpoint='x.ckpt', robot_description_file=str(tmp_path / 'table.urdf'))
    with _pytest.raises(ConfigError, match="root frame 'table', the checkpoint's poses are in 'world'"):
        end_effector_space(cfg, ['joint1', 'joint2', 'joint3'], space)
    ok = end_effector_space(PolicyNodeConfig(checkpoint='x.ckpt'), ['joint3', 'joint1', 'joint2'],
                            space)
    assert ok.root_frame == 'world' and ok.joint_names == ['joint3', 'joint1', 'joint2']
