"""Rollout figures and videos (dp_eval.rollouts, video, browser) on a recorded-run bag built here.

The bag has what `dp_eval closed-loop --record` records (messages built as rclpy messages, written
with the project's BagWriter):
two episodes of /task_status, /joint_states, /policy_node/trajectory, /camera/image_raw and
/camera/camera_info (the embedded camera's intrinsics, frame camera_optical_frame). Episode 1
succeeds on the left and is followed, after its `done`, by the reset's jump back home (which must
not show in its path); episode 2 touches the post and fails.
"""
from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')

from dp_common.kinematics import KinematicChain  # noqa: E402
from dp_eval import rollouts, video  # noqa: E402
from dp_eval.browser import check_report, find_chromium  # noqa: E402
from dp_eval.report import write_report  # noqa: E402

JOINTS = ['joint1', 'joint2', 'joint3']
HOME = np.array([-0.9, 2.5, -1.6])
LEFT = np.array([0.25, 1.6, -1.3])
NS = 1_000_000_000


NUMERIC = {'double': np.float64, 'float': np.float32, 'uint8': np.uint8, 'octet': np.uint8,
           'int8': np.int8, 'int16': np.int16, 'uint16': np.uint16, 'int32': np.int32,
           'uint32': np.uint32, 'int64': np.int64, 'uint64': np.uint64}


def _to_rosbags(msg, store):
    """An rclpy message as the rosbags dataclass of the same type (BagWriter serialises it).
    (rclpy's serialize_message pads JointState in a way rosbags' reader refuses; what DDS delivers
    to `dp_eval closed-loop --record` is read fine.)"""
    pkg = type(msg).__module__.split('.')[0]
    cls = store.types[f'{pkg}/msg/{type(msg).__name__}']
    kwargs = {}
    for name, ftype in msg.get_fields_and_field_types().items():
        v = getattr(msg, name)
        base = ftype.split('<')[-1].split('[')[0].rstrip('>').split(',')[0]
        if hasattr(v, 'get_fields_and_field_types'):
            v = _to_rosbags(v, store)
        elif base in NUMERIC and ('sequence' in ftype or '[' in ftype):
            v = np.asarray(v, dtype=NUMERIC[base])
        elif isinstance(v, (list, tuple)):
            v = [_to_rosbags(x, store) if hasattr(x, 'get_fields_and_field_types') else x
                 for x in v]
        kwargs[name] = v
    return cls(**kwargs)


def _stamp(msg, t):
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int(round((t % 1) * 1e9))
    return msg


def _write_run(path):
    from builtin_interfaces.msg import Duration
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from dp_common.images import numpy_to_image
    from dp_msgs.msg import TaskStatus
    from dp_common.bags import BagWriter
    from dp_sim.env import ArmTaskEnv
    env = ArmTaskEnv()
    fx, fy, cx, cy = env.camera_intrinsics()
    env.close()
    out = []

    def put(topic, msgtype, msg, t):
        out.append((t, topic, msgtype, msg))

    def status(t, episode, done=False, success=False, side='', contact=False):
        m = _stamp(TaskStatus(episode=int(episode), done=bool(done), success=bool(success),
                              side=side, obstacle_contact=bool(contact)), t)
        m.target.x, m.target.y = 0.40, 0.05
        put('/task_status', 'dp_msgs/msg/TaskStatus', m, t)

    info = _stamp(CameraInfo(width=96, height=96, k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]), 1.0)
    info.header.frame_id = 'camera_optical_frame'
    put('/camera/camera_info', 'sensor_msgs/msg/CameraInfo', info, 1.0)
    # Episode 1, t 1..3 s: HOME -> LEFT; done at 3.0; then the reset's jump home at 3.2.
    # Episode 2, t 3.5..5 s: HOME -> towards the post; contact from 4.5; done (failed) at 5.0.
    post_q = np.array([0.0, 1.2, -1.4])
    for t in np.arange(1.0, 5.5, 0.02).tolist():
        if t < 3.0:
            q = HOME + (LEFT - HOME) * min(1.0, (t - 1.0) / 1.5)
        elif t < 3.5:
            q = LEFT if t < 3.2 else HOME
        else:
            q = HOME + (post_q - HOME) * min(1.0, (t - 3.5) / 1.0)
        put('/joint_states', 'sensor_msgs/msg/JointState',
            _stamp(JointState(name=JOINTS, position=q.tolist()), t), t)
    for t in np.arange(1.0, 5.5, 0.1).tolist():
        img = numpy_to_image(np.full((96, 96, 3), 60, np.uint8), 'rgb8', stamp=None,
                             frame_id='camera_optical_frame')
        put('/camera/image_raw', 'sensor_msgs/msg/Image', _stamp(img, t), t)
    ep2_start = None
    for t in np.arange(1.0, 5.5, 0.1).tolist():
        ep = 1 if t < 3.5 else 2
        if ep == 2 and ep2_start is None:
            ep2_start = t
            # The simulation's joint state with the reset's own stamp, taken before the reset
            # moved the arm: it belongs to no episode's path.
            put('/joint_states', 'sensor_msgs/msg/JointState',
                _stamp(JointState(name=JOINTS, position=LEFT.tolist()), t), t)
        contact = ep == 2 and t >= 4.5
        status(t, ep, done=(ep == 1 and t >= 3.0) or (ep == 2 and t >= 5.0),
               success=ep == 1 and t >= 2.5, side='left' if ep == 1 and t >= 2.0 else '',
               contact=contact)
    # One chunk in episode 1 at t = 1.5 s: 8 points 0.1 s apart towards LEFT.
    chunk = _stamp(JointTrajectory(joint_names=JOINTS), 1.5)
    for i in range(8):
        q = HOME + (LEFT - HOME) * min(1.0, (0.5 + 0.1 * i) / 1.5)
        chunk.points.append(JointTrajectoryPoint(
            positions=q.tolist(), time_from_start=Duration(sec=0, nanosec=int(0.1 * i * 1e9))))
    put('/policy_node/trajectory', 'trajectory_msgs/msg/JointTrajectory', chunk, 1.5)
    with BagWriter(path, storage='mcap') as w:
        for t, topic, _, msg in sorted(out, key=lambda x: x[0]):
            w.write(topic, _to_rosbags(msg, w.store), int(t * NS))
    return path


@pytest.fixture(scope='module')
def run_bag(tmp_path_factory):
    return _write_run(tmp_path_factory.mktemp('run') / 'run')


@pytest.fixture(scope='module')
def chain():
    from dp_sim.env import default_urdf_path
    return KinematicChain.from_urdf(default_urdf_path(), tip='tool0')


def test_read_rollouts_paths_outcomes_clearance_and_contact(run_bag, chain):
    geo = rollouts.task_geometry()
    rs, info = rollouts.read_rollouts(run_bag, geometry=geo)
    assert info is not None and info.header.frame_id == 'camera_optical_frame'
    assert [r.episode for r in rs] == [1, 2]
    a, b = rs
    assert (a.success, a.side, a.contact) == (True, 'left', False)
    assert (b.success, b.contact) == (False, True) and b.outcome == 'failed'
    assert b.t.min() > b.t0 and np.linalg.norm(b.tip[0] - chain.position(LEFT)) > 0.05
    # Episode 1 ends at its done status: the reset's jump home at 3.2 s is not in its path.
    assert a.t1 == pytest.approx(3.0) and a.t.max() < 3.0
    np.testing.assert_allclose(a.tip, chain.position(a.q), atol=1e-12)
    np.testing.assert_allclose(a.tip[-1], chain.position(LEFT), atol=1e-9)
    d = np.linalg.norm(b.tip[:, :2] - geo.post_xy, axis=1)
    assert b.clearance_m == pytest.approx(d.min() - geo.post_radius_m - geo.stylus_radius_m)
    i = int(np.searchsorted(b.t, 4.5))
    np.testing.assert_allclose(b.contact_xy, b.tip[i, :2], atol=1e-12)
    assert len(a.chunks) == 1 and len(b.chunks) == 0
    stamp, t_abs, tip, published = a.chunks[0]
    assert published == pytest.approx(1.5)
    assert stamp == pytest.approx(1.5) and tip.shape == (8, 3)
    np.testing.assert_allclose(t_abs, 1.5 + 0.1 * np.arange(8), atol=1e-9)


def test_videos_have_every_frame_and_the_planned_chunk_drawn(run_bag, tmp_path):
    av = pytest.importorskip('av')
    rs, info = rollouts.read_rollouts(run_bag)
    chosen = rollouts.choose_video_episodes(rs, successes=1, max_videos=5)
    assert [r.episode for r in chosen] == [1, 2]
    made = rollouts.episode_videos(run_bag, chosen, info, tmp_path, 'x')
    assert [p.suffix for _, p, _ in made] == ['.mp4', '.mp4']
    assert [w for _, _, w in made] == [96 * rollouts.VIDEO_SCALE] * 2
    with av.open(str(made[0][1])) as c:
        frames = [f.to_ndarray(format='rgb24') for f in c.decode(video=0)]
    assert len(frames) == 20                                  # 1.0 .. 2.9 s at 10 Hz
    assert frames[0].shape == (96 * rollouts.VIDEO_SCALE, 96 * rollouts.VIDEO_SCALE, 3)
    # The chunk (from 1.5 s) projected into the frame at 1.6 s: yellow/orange where its points
    # are (the camera's pose from the URDF, K from camera_info), grey elsewhere.
    cam = rollouts._Camera(info)
    uv = cam.project(rs[0].chunks[0][2]) * rollouts.VIDEO_SCALE
    f = frames[6].astype(int)
    u, v = np.round(uv[3]).astype(int)
    patch = f[v - 2:v + 3, u - 2:u + 3]
    assert np.any((patch[..., 0] > 200) & (patch[..., 2] < 100)), patch[..., :3].tolist()
    assert np.all(np.abs(f[5:10, -10:-5] - 60) < 12)          # a corner stays background


def test_gif_fallback_and_encoder_report(tmp_path):
    from PIL import Image
    frames = [np.full((10, 12, 3), i * 20, np.uint8) for i in range(5)]
    path = video.write_video(frames, tmp_path / 'clip', fps=10, force_gif=True)
    assert path.suffix == '.gif'
    with Image.open(path) as im:
        assert im.n_frames == 5 and im.size == (12, 10)
    with pytest.raises(ValueError):
        video.write_video([], tmp_path / 'none')


def test_plots_and_report_embed_paths_clearance_fans_and_videos(run_bag, tmp_path):
    geo = rollouts.task_geometry()
    rs, info = rollouts.read_rollouts(run_bag, geometry=geo)
    assert rollouts.plot_paths([('diffusion', rs), ('regression', rs[:1])], geo,
                               tmp_path / 'paths.png')
    assert rollouts.plot_clearance([('diffusion', rs)], tmp_path / 'clearance.png')
    fan = {'episode': 'ep1', 't': 0.3, 'tip': rs[0].tip[0],
           'fan': np.stack([rs[0].tip[:20] + [0.0, 0.01 * k, 0.0] for k in range(4)])}
    assert rollouts.plot_fans([('diffusion', [fan, fan]), ('regression', [fan])], geo,
                              tmp_path / 'fans.png')
    assert not rollouts.plot_paths([], geo, tmp_path / 'none.png')
    for name in ('paths', 'clearance', 'fans'):
        assert (tmp_path / f'{name}.png').stat().st_size > 5000


def _report_with_videos(run_bag, out):
    rs, info = rollouts.read_rollouts(run_bag, geometry=rollouts.task_geometry())
    visuals = [{'kind': 'video', 'section': 'Videos', 'caption': f'episode {r.episode}',
                'path': str(p.relative_to(out))}
               for r, p, _ in rollouts.episode_videos(run_bag, rs, info, out / 'videos', 'v')]
    (out / 'plots').mkdir(parents=True, exist_ok=True)
    rollouts.plot_paths([('diffusion', rs)], rollouts.task_geometry(), out / 'plots' / 'paths.png')
    visuals.insert(0, {'kind': 'image', 'section': 'Rollouts', 'caption': 'paths',
                       'path': 'plots/paths.png'})
    result = {'kind': 'closed_loop', 'label': 'diffusion', 'episodes': [], 'partial': False,
              'errors': [], 'metrics': {'episodes': 2, 'successes': 1}}
    return write_report([result], out, visuals=visuals)['html']


def test_report_html_and_md_link_the_visuals(run_bag, tmp_path):
    html_path = _report_with_videos(run_bag, tmp_path)
    text = html_path.read_text()
    assert '<video src="videos/v_episode_1.mp4"' in text and 'plots/paths.png' in text
    md = (tmp_path / 'report.md').read_text()
    assert '](videos/v_episode_2.mp4)' in md and '![paths](plots/paths.png)' in md


def test_report_loads_in_a_real_browser(run_bag, tmp_path):
    """Chromium (Debian's package; `make test` installs it with apt where it can) opens the report
    from disk: every image and video decodes. A report with a truncated video and a missing image
    is caught, so the check can fail."""
    if find_chromium() is None:
        pytest.skip('no Chromium: apt-get install chromium (scripts/browser.sh does it where apt '
                    'and root are available)')
    pytest.importorskip('av')
    html_path = _report_with_videos(run_bag, tmp_path)
    assert check_report(html_path) == []
    video_file = tmp_path / 'videos' / 'v_episode_1.mp4'
    video_file.write_bytes(video_file.read_bytes()[:300])
    (tmp_path / 'plots' / 'paths.png').unlink()
    failed = sorted(m['src'] for m in check_report(html_path))
    assert failed == ['plots/paths.png', 'videos/v_episode_1.mp4'], failed
    assert not any(p.name.startswith('.') for p in tmp_path.iterdir())   # probe page removed
