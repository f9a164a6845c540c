"""Tests of dp_policy.data.dataset: bags written here (sqlite3 and mcap) with known synthetic
signals, resampled onto the grid and checked against the signals themselves.

Signals (T0 = 100 s): joint j's position is sin(t - T0 + j); camera frame f carries f in its
first channel; Float64MultiArray command c is c / 100 + 10 * j for joint j; arrival (log) times lag
the header stamps by a random 0..60 ms, so arrival order differs from stamp order.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dp_common.images import compressed_fields, image_fields
import dp_policy.data.dataset as ds
from dp_common.bags import BagWriter, msgs, typestore
from dp_policy.data.dataset import DatasetConfig, DatasetError, decode_bag, find_bags, load_episodes

NS = 1_000_000_000
T0 = 100 * NS
JOINTS = ['shoulder', 'elbow', 'wrist']
MSG_ORDER = ['wrist', 'gripper', 'shoulder', 'elbow']   # scrambled, with an extra joint
CMD_ORDER = ['elbow', 'wrist', 'shoulder']               # the controller's joint order
JS_HZ, CAM_HZ, CMD_HZ = 50, 15, 20
CAM_OFF, CMD_OFF = 13_000_000, 5_000_000                 # first frame / command after T0


def q_true(t_ns, j):
    return np.sin((np.asarray(t_ns) - T0) / NS + j)


def frame_img(f, h=6, w=8):
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = f % 256
    img[..., 1] = 7
    img[..., 2] = 200
    return img


def padded_fields(arr, encoding, pad):
    f = image_fields(arr, encoding)
    rows = np.asarray(f['data']).reshape(f['height'], -1)
    f['data'] = np.concatenate([rows, np.full((rows.shape[0], pad), 0xEE, np.uint8)], axis=1).reshape(-1)
    f['step'] += pad
    return f


def write_bag(path, storage='sqlite3', duration_s=3.0, cams=('rgb8',), command='array',
              episodes=None, store=None, skip=(), js_nan_at=None, js_zero_stamp=False,
              encoding_override=None, seed=0, extra=None):
    """Writes a demonstration bag; returns its path. cams: per camera one of 'rgb8', 'bgr8',
    'jpeg', 'png' (camera i on /cam{i}/image...)."""
    rng = np.random.default_rng(seed)
    store = store or typestore()
    end = T0 + int(duration_s * NS)
    with BagWriter(path, storage, store) as w:
        def put(topic, msg, stamp):
            w.write(topic, msg, stamp + int(rng.integers(0, 60_000_000)))

        if 'js' not in skip:
            for k in range(int(duration_s * JS_HZ) + 1):
                t = T0 + k * NS // JS_HZ
                q = {n: q_true(t, JOINTS.index(n)) if n in JOINTS else 42.0 for n in MSG_ORDER}
                if js_nan_at is not None and k == js_nan_at:
                    q['elbow'] = float('nan')
                put('/joint_states', msgs.joint_state(0 if js_zero_stamp else t, MSG_ORDER,
                                                      [q[n] for n in MSG_ORDER], store=store), t)
        for i, kind in enumerate(cams):
            for f in range(int(duration_s * CAM_HZ)):
                t = T0 + CAM_OFF + f * NS // CAM_HZ
                if t > end:
                    break
                img = frame_img(f)
                if kind in ('rgb8', 'bgr8'):
                    fields = padded_fields(img if kind == 'rgb8' else img[:, :, ::-1].copy(), kind, 3)
                    if encoding_override:
                        fields['encoding'] = encoding_override
                    put(f'/cam{i}/image_raw', msgs.image(t, fields, store=store), t)
                else:
                    put(f'/cam{i}/image_raw/compressed',
                        msgs.compressed_image(t, compressed_fields(img, kind, quality=98), store=store), t)
        if command == 'array' and 'cmd' not in skip:
            for c in range(int(duration_s * CMD_HZ)):
                t = T0 + CMD_OFF + c * NS // CMD_HZ
                vals = [c / 100 + 10 * JOINTS.index(n) for n in CMD_ORDER]
                w.write('/forward_position_controller/commands', msgs.float64_multi_array(vals, store), t)
        if 'cmd' in skip:
            w.add_topic('/forward_position_controller/commands', 'std_msgs/msg/Float64MultiArray')
        if episodes is not None:
            for k in range(int(duration_s * 10) + 1):
                t = T0 + k * NS // 10
                put('/task_status', msgs.task_status(t, episodes(t), store=store), t)
        if extra:
            extra(w, store)
    return Path(path)


def cfg(**kw):
    base = dict(joint_names=JOINTS, cameras={'front': '/cam0/image_raw'},
                command_joint_names=CMD_ORDER)
    base.update(kw)
    return DatasetConfig(**base)


def expected_grid(cam_count=1):
    t0 = max(T0, T0 + CMD_OFF, T0 + CAM_OFF if cam_count else T0)
    return t0


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_alignment_on_header_stamps(tmp_path, storage):
    bag = write_bag(tmp_path / 'demo', storage, cams=('rgb8', 'bgr8'))
    c = cfg(cameras={'front': '/cam0/image_raw', 'side': '/cam1/image_raw'})
    (ep,) = decode_bag(bag, c)
    g = np.round(ep.t * NS).astype(np.int64)
    # grid: from the latest stream start (the first camera frame) in 0.1 s steps to the last frame
    assert g[0] == T0 + CAM_OFF
    assert np.all(np.diff(g) == NS // 10)
    last_frame = T0 + CAM_OFF + (3 * CAM_HZ - 1) * NS // CAM_HZ
    assert g[-1] <= last_frame < g[-1] + NS // 10
    # state: sin(t) linearly interpolated from 50 Hz samples
    for j in range(3):
        np.testing.assert_allclose(ep.state[:, j], q_true(g, j), atol=1e-4)
    # images: newest frame at or before t, in RGB whatever the encoding (bgr8 swapped back)
    f_exp = (g - T0 - CAM_OFF) * CAM_HZ // NS
    for cam in ('front', 'side'):
        img = ep.images[cam]
        assert img.shape == (len(g), 6, 8, 3) and img.dtype == np.uint8
        assert img[:, 0, 0, 0].tolist() == (f_exp % 256).tolist()
        assert (img[..., 1] == 7).all() and (img[..., 2] == 200).all()
    # commands: zero-order hold of the newest command at or before t (log time), by name
    c_exp = (g - T0 - CMD_OFF) * CMD_HZ // NS
    for j in range(3):
        np.testing.assert_allclose(ep.action[:, j], c_exp / 100 + 10 * j, atol=1e-6)
    assert ep.name == str(bag)


@pytest.mark.parametrize('kind', ['jpeg', 'png'])
def test_compressed_images_and_resize(tmp_path, kind):
    bag = write_bag(tmp_path / 'demo', cams=(kind,), duration_s=1.5)
    c = cfg(cameras={'front': '/cam0/image_raw/compressed'}, image_hw=(3, 4))
    (ep,) = decode_bag(bag, c)
    g = np.round(ep.t * NS).astype(np.int64)
    f_exp = (g - T0 - CAM_OFF) * CAM_HZ // NS
    assert ep.images['front'].shape == (len(g), 3, 4, 3)
    tol = 0 if kind == 'png' else 3
    assert np.abs(ep.images['front'][:, 1, 1, 0].astype(int) - f_exp).max() <= tol


def test_humble_typestore_and_state_only(tmp_path):
    bag = write_bag(tmp_path / 'demo', 'mcap', cams=(), store=typestore('humble'), duration_s=1.0)
    episodes, meta = load_episodes([bag], cfg(cameras={}), cache_dir=tmp_path / 'c', progress=False)
    (ep,) = episodes
    assert ep.images == {} and meta.image_hw is None and meta.camera_names == []
    g = np.round(ep.t * NS).astype(np.int64)
    assert g[0] == T0 + CMD_OFF  # no camera: the first command starts the grid
    np.testing.assert_allclose(ep.state[:, 1], q_true(g, 1), atol=1e-4)


def test_joint_trajectory_commands(tmp_path):
    # Trajectory k starts at T0 + k * 0.5 s (header stamp; k == 3 has a zero stamp, so its log
    # time counts); its points follow the line q = (t - T0) + 10 * k + j for 0.6 s, then hold.
    def extra(w, store):
        for k in range(6):
            start = T0 + k * NS // 2
            tfs = [0.0, 0.3, 0.6]
            pos = [[(k * 0.5 + s) + 10 * k + j for j in (2, 0, 1)] for s in tfs]  # wrist, shoulder, elbow
            stamp = 0 if k == 3 else start
            w.write('/arm/joint_trajectory',
                    msgs.joint_trajectory(stamp, ['wrist', 'shoulder', 'elbow'], tfs, pos, store), start)

    bag = write_bag(tmp_path / 'demo', cams=(), command='traj', extra=extra)
    (ep,) = decode_bag(bag, cfg(cameras={}, command_topic='/arm/joint_trajectory',
                                command_type='joint_trajectory'))
    g = np.round(ep.t * NS).astype(np.int64)
    assert g[0] == T0
    rel = (g - T0) / NS
    k = np.minimum(rel // 0.5, 5)
    held = np.minimum(rel - k * 0.5, 0.6) + k * 0.5   # the last point holds
    for j in range(3):
        np.testing.assert_allclose(ep.action[:, j], held + 10 * k + j, atol=1e-6)


def test_trajectory_first_point_later_moves_from_previous_command(tmp_path):
    def extra(w, store):
        w.write('/traj', msgs.joint_trajectory(T0, JOINTS, [0.0], [[1.0, 1.0, 1.0]], store), T0)
        # starts at T0 + 1 s, first point 0.4 s later: moves from 1.0 (in force) to 5.0
        w.write('/traj', msgs.joint_trajectory(T0 + NS, JOINTS, [0.4], [[5.0, 5.0, 5.0]], store), T0 + NS)

    bag = write_bag(tmp_path / 'demo', cams=(), command='traj', extra=extra, duration_s=2.0)
    (ep,) = decode_bag(bag, cfg(cameras={}, command_topic='/traj'))
    rel = np.round((ep.t - 100.0) * 10).astype(int)
    a = dict(zip(rel.tolist(), ep.action[:, 0].tolist()))
    assert a[5] == 1.0 and a[10] == 1.0
    assert a[11] == pytest.approx(2.0) and a[12] == pytest.approx(3.0) and a[14] == pytest.approx(5.0)
    assert a[20] == 5.0


def test_segmentation_by_task_status(tmp_path):
    bag = write_bag(tmp_path / 'demo', cams=('rgb8',),
                    episodes=lambda t: 4 if t < T0 + 3 * NS // 2 else 5)
    eps = decode_bag(bag, cfg(episode_topic='/task_status'))
    assert [e.name for e in eps] == [f'{bag}#ep4', f'{bag}#ep5']
    g0 = np.round(eps[0].t * NS).astype(np.int64)
    g1 = np.round(eps[1].t * NS).astype(np.int64)
    assert g0[0] == T0 + CAM_OFF and g0[-1] < T0 + 3 * NS // 2
    assert g1[0] == T0 + 3 * NS // 2  # the status stamp where `episode` changed
    for e, g in ((eps[0], g0), (eps[1], g1)):
        np.testing.assert_allclose(e.state[:, 2], q_true(g, 2), atol=1e-4)


def test_cache_reuse_without_reading_the_bag(tmp_path, monkeypatch):
    bags = [write_bag(tmp_path / 'demos' / f'ep{i}', seed=i, duration_s=1.0) for i in range(2)]
    eps1, meta1 = load_episodes([tmp_path / 'demos'], cfg(), progress=False)
    cache = tmp_path / 'demos' / '.dp_cache'
    assert len(list(cache.glob('*.npz'))) == 2
    assert meta1.image_hw == (6, 8) and meta1.camera_names == ['front'] and meta1.dt_s == 0.1

    def boom(*a, **k):
        raise AssertionError('the bag was read again')
    monkeypatch.setattr(ds, 'decode_bag', boom)
    eps2, meta2 = load_episodes([tmp_path / 'demos'], cfg(), progress=False)
    assert meta2 == meta1 and [e.name for e in eps2] == [str(b) for b in bags]
    for a, b in zip(eps1, eps2):
        np.testing.assert_array_equal(a.t, b.t)
        np.testing.assert_array_equal(a.state, b.state)
        np.testing.assert_array_equal(a.action, b.action)
        np.testing.assert_array_equal(a.images['front'], b.images['front'])
    # other decode settings: a different key, so the bag is decoded again
    with pytest.raises(AssertionError, match='read again'):
        load_episodes([tmp_path / 'demos'], cfg(dt_s=0.2), progress=False)


def test_failed_bag_keeps_earlier_cache(tmp_path):
    write_bag(tmp_path / 'demos' / 'a_good', duration_s=1.0)
    write_bag(tmp_path / 'demos' / 'b_bad', duration_s=1.0, js_nan_at=10)
    with pytest.raises(DatasetError, match='b_bad'):
        load_episodes(tmp_path / 'demos', cfg(), cache_dir=tmp_path / 'cache', progress=False)
    files = [p.name for p in (tmp_path / 'cache').iterdir()]
    assert len(files) == 1 and files[0].startswith('a_good-') and files[0].endswith('.npz')


def test_missing_topic_lists_topics_present(tmp_path):
    bag = write_bag(tmp_path / 'demo', duration_s=0.5)
    with pytest.raises(DatasetError) as e:
        decode_bag(bag, cfg(cameras={'front': '/wrong/image'}))
    text = str(e.value)
    assert str(bag) in text and '/wrong/image' in text and 'not found' in text
    assert '/cam0/image_raw (sensor_msgs/msg/Image)' in text and '/joint_states' in text
    with pytest.raises(DatasetError, match='task_status'):
        decode_bag(bag, cfg(episode_topic='/task_status'))


def test_empty_topic(tmp_path):
    bag = write_bag(tmp_path / 'demo', duration_s=0.5, skip=('cmd',))
    with pytest.raises(DatasetError, match=r'/forward_position_controller/commands: command topic '
                                           r'has no usable messages'):
        decode_bag(bag, cfg())


def test_nan_joint_position_names_bag_topic_time(tmp_path):
    bag = write_bag(tmp_path / 'demo', duration_s=1.0, js_nan_at=25)
    with pytest.raises(DatasetError) as e:
        decode_bag(bag, cfg())
    assert f'{bag}: topic /joint_states at t=100.500s: joint state unusable (nan_position:elbow)' \
        in str(e.value)


def test_unknown_encoding(tmp_path):
    bag = write_bag(tmp_path / 'demo', duration_s=0.5, encoding_override='yuv422')
    with pytest.raises(DatasetError, match=r"topic /cam0/image_raw at t=100\.\d+s: .*'yuv422'"):
        decode_bag(bag, cfg())


def test_zero_header_stamp_and_missing_joint(tmp_path):
    bag = write_bag(tmp_path / 'demo', duration_s=0.5, js_zero_stamp=True)
    with pytest.raises(DatasetError, match='/joint_states at t=.*header stamp is zero'):
        decode_bag(bag, cfg())
    bag = write_bag(tmp_path / 'demo2', duration_s=0.5)
    with pytest.raises(DatasetError, match=r'commands at t=100.005s: command unusable '
                                           r'\(length_mismatch:names=4,positions=3\)'):
        decode_bag(bag, cfg(joint_names=JOINTS + ['hand'], command_joint_names=[]))

    def extra(w, store):  # commands after the joint states, so that the joint states fail first
        w.write('/traj', msgs.joint_trajectory(T0 + NS, JOINTS + ['hand'], [0.0], [[0] * 4], store),
                T0 + NS)
    bag = write_bag(tmp_path / 'demo3', duration_s=0.5, cams=(), command='traj', extra=extra)
    with pytest.raises(DatasetError, match=r'/joint_states at t=100.000s: joint state unusable '
                                           r'\(missing_joint:hand\)'):
        decode_bag(bag, cfg(cameras={}, joint_names=JOINTS + ['hand'], command_topic='/traj',
                            command_joint_names=[]))


def test_streams_that_never_overlap(tmp_path):
    def extra(w, store):  # commands logged long after the joint states (another clock)
        w.write('/late', msgs.float64_multi_array([0, 0, 0], store), T0 + 100 * NS)

    bag = write_bag(tmp_path / 'demo', duration_s=0.5, cams=(), extra=extra)
    with pytest.raises(DatasetError, match='never overlap.*--use-sim-time'):
        decode_bag(bag, cfg(cameras={}, command_topic='/late'))


def test_config_validation_and_yaml(tmp_path):
    with pytest.raises(ValueError, match='joint_names'):
        DatasetConfig(joint_names=[])
    with pytest.raises(ValueError, match='command_type'):
        cfg(command_type='twist')
    with pytest.raises(ValueError, match='missing'):
        cfg(command_joint_names=['elbow'])
    with pytest.raises(ValueError, match='image_hw'):
        cfg(image_hw=(0, 3))
    with pytest.raises(ValueError, match='dt_s'):
        cfg(dt_s=0)
    y = tmp_path / 'd.yaml'
    y.write_text('dataset:\n  joint_names: [a, b]\n  cameras: {top: /top/image}\n  image_hw: [48, 64]\n'
                 '  dt_s: 0.05\n')
    c = DatasetConfig.from_yaml(y)
    assert c.cameras == {'top': '/top/image'} and c.image_hw == (48, 64) and c.dt_s == 0.05
    y.write_text('joint_names: [a]\nbogus: 1\n')
    with pytest.raises(ValueError, match="unknown keys \\['bogus'\\]"):
        DatasetConfig.from_yaml(y)


def test_find_bags(tmp_path):
    a = write_bag(tmp_path / 'x' / 'a', duration_s=0.2, cams=())
    b = write_bag(tmp_path / 'x' / 'sub' / 'b', 'mcap', duration_s=0.2, cams=())
    assert find_bags([tmp_path / 'x']) == [a, b]
    assert find_bags([b, b / 'metadata.yaml']) == [b]
    with pytest.raises(DatasetError, match='nothing_here: not a rosbag2 folder'):
        find_bags([tmp_path / 'nothing_here'])
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DatasetError, match='no rosbag2 folder'):
        find_bags([tmp_path / 'empty'])


def test_dataset_module_is_ros_free():
    code = ('import sys, dp_policy.data.dataset, dp_common.bags; '
            'assert "rclpy" not in sys.modules, "rclpy imported"')
    subprocess.run([sys.executable, '-c', code], check=True)


def _tree_digest(folder: Path) -> dict:
    import hashlib
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file()}


def test_joint_states_alone_actions_are_the_positions_future_steps_later(tmp_path):
    """A bag of /joint_states alone (no command topic): the action at t is the measured position
    at t + future_steps * dt, the last future_steps steps dropped; the bag folder is unchanged by
    reading it (checksums), the cache lives outside it."""
    bag = write_bag(tmp_path / 'bags' / 'js_only', cams=(), skip=('cmd',))
    before = _tree_digest(bag)
    c = cfg(cameras={}, action_source='joint_states', command_topic='/nowhere')
    eps, meta = load_episodes(bag, c, cache_dir=tmp_path / 'cache', progress=False)
    (ep,) = eps
    t_ns = np.round(ep.t * 1e9).astype(np.int64)
    assert t_ns[0] == T0 and t_ns[-1] <= T0 + 3 * NS - NS // 10      # 3 s bag, 1 step kept back
    for j in range(3):
        np.testing.assert_allclose(ep.state[:, j], q_true(t_ns, j), atol=2e-3)
        np.testing.assert_allclose(ep.action[:, j], q_true(t_ns + NS // 10, j), atol=2e-3)
    two = decode_bag(bag, cfg(cameras={}, action_source='joint_states', future_steps=3))[0]
    assert len(two) == len(ep) - 2
    np.testing.assert_allclose(two.action[:, 0], q_true(t_ns[:len(two)] + 3 * NS // 10, 0),
                               atol=2e-3)
    assert _tree_digest(bag) == before
    # the same decoding on the default cache location: beside the bag, not inside it
    load_episodes(bag, c, progress=False)
    assert _tree_digest(bag) == before and (bag.parent / '.dp_cache').is_dir()


def test_leader_arm_actions_by_name(tmp_path):
    """Actions from a leader arm's JointState (its own joint names, mapped in order), at the same
    time as the state."""
    lead_names = ['l_wrist', 'l_shoulder', 'l_elbow']

    def extra(w, store):
        for k in range(3 * 30 + 1):
            t = T0 + k * NS // 30
            vals = {'l_shoulder': 2 * q_true(t, 0), 'l_elbow': 2 * q_true(t, 1),
                    'l_wrist': 2 * q_true(t, 2)}
            w.write('/leader/joint_states', msgs.joint_state(t, lead_names,
                                                             [vals[n] for n in lead_names],
                                                             store=store), t)
    bag = write_bag(tmp_path / 'lead', cams=(), skip=('cmd',), extra=extra)
    c = cfg(cameras={}, action_source='leader',
            leader_joint_names=['l_shoulder', 'l_elbow', 'l_wrist'])
    (ep,) = decode_bag(bag, c)
    t_ns = np.round(ep.t * 1e9).astype(np.int64)
    for j in range(3):
        np.testing.assert_allclose(ep.action[:, j], 2 * q_true(t_ns, j), atol=5e-3)
    with pytest.raises(DatasetError, match=r'lead.*/leader/joint_states at t=100\.000s: leader '
                                           r'joint state unusable \(missing_joint:shoulder,elbow,wrist\)'):
        decode_bag(bag, cfg(cameras={}, action_source='leader'))   # the follower's names
    with pytest.raises(DatasetError, match=r'/leader/joint_states.*not found in the bag'):
        decode_bag(write_bag(tmp_path / 'nolead', cams=(), skip=('cmd',)),
                   cfg(cameras={}, action_source='leader'))


def test_still_episodes_and_missing_joints_are_named_not_tracebacks(tmp_path, capsys):
    still = write_bag(tmp_path / 'still', cams=(), skip=('cmd',), duration_s=1.0)
    c = cfg(cameras={}, action_source='joint_states', min_motion_rad=10.0)
    with pytest.raises(DatasetError, match=r'still.*/joint_states.*no episode moves by 10.0 rad'):
        decode_bag(still, c)
    # of a split bag, only the still episode goes, with a message naming it
    split = write_bag(tmp_path / 'split', cams=(), skip=('cmd',), duration_s=3.0,
                      episodes=lambda t: 1 if t < T0 + 27 * NS // 10 else 2)
    eps = decode_bag(split, cfg(cameras={}, action_source='joint_states', min_motion_rad=0.5,
                                episode_topic='/task_status'))
    assert [e.name.rsplit('#', 1)[1] for e in eps] == ['ep1']
    assert 'split#ep2: skipped, its actions from /joint_states move by' in capsys.readouterr().err
    with pytest.raises(DatasetError, match=r'/joint_states at t=100\.000s: joint state unusable '
                                           r'\(missing_joint:hand\)'):
        decode_bag(still, cfg(cameras={}, joint_names=JOINTS + ['hand'], command_joint_names=[],
                              action_source='joint_states'))


def test_action_source_validation():
    with pytest.raises(ValueError, match='action_source must be one of'):
        cfg(action_source='teleop')
    with pytest.raises(ValueError, match='future_steps must be >= 1'):
        cfg(action_source='joint_states', future_steps=0)
    with pytest.raises(ValueError, match="use action_source 'joint_states'"):
        cfg(action_source='leader', leader_topic='/joint_states')
    with pytest.raises(ValueError, match='leader_joint_names'):
        cfg(action_source='leader', leader_joint_names=['a', 'b'])
    assert cfg(action_source='joint_states', command_topic='').command_topic == ''


def test_joint_states_actions_never_reach_into_the_next_episode(tmp_path):
    """A split bag whose arm jumps at the episode change (a reset): every action of the first
    episode is one of its own positions, not the next episode's."""
    path = tmp_path / 'jump'
    with BagWriter(path, 'sqlite3', typestore()) as w:
        for k in range(4 * JS_HZ + 1):
            t = T0 + k * NS // JS_HZ
            s = (t - T0) / NS
            q = s if s < 2.0 else 5.0 + s
            w.write('/joint_states', msgs.joint_state(t, JOINTS, [q, q, q]), t)
        for k in range(41):
            t = T0 + k * NS // 10
            w.write('/task_status', msgs.task_status(t, 1 if k < 20 else 2), t)
    eps = decode_bag(path, cfg(cameras={}, action_source='joint_states', future_steps=2,
                               episode_topic='/task_status'))
    assert [e.name.rsplit('#', 1)[1] for e in eps] == ['ep1', 'ep2']
    assert eps[0].action.max() < 2.0 and eps[0].t[-1] < T0 / NS + 2.0 - 0.2 + 1e-6
    np.testing.assert_allclose(eps[0].action[:, 0], eps[0].t - T0 / NS + 0.2, atol=1e-6)
