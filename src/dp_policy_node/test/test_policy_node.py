"""policy_node in one process: a private rclpy Context, the node, and a driver node that plays
camera + joint-state publishers (and /clock for the simulated-time tests).

The checkpoint is a real one with random weights (checkpoint.create_untrained_checkpoint, the
'tiny' preset): what is tested is the node's wiring, time handling and input hygiene, not what
the network predicts.
"""
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,  # noqa: E402
                       qos_profile_sensor_data)

from dp_common.images import numpy_to_image, rgb8_to_compressed  # noqa: E402
from dp_common.stamps import ns_to_stamp, stamp_to_ns  # noqa: E402
from dp_common.stamps import stamp_to_sec  # noqa: E402
from dp_msgs.msg import ActionChunk, PolicyStatus  # noqa: E402
from dp_msgs.srv import ResetHistory, SetEnabled  # noqa: E402
from dp_policy.checkpoint import create_untrained_checkpoint  # noqa: E402
from dp_policy_node.policy_node import PolicyNode  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

JOINTS = ['joint1', 'joint2', 'joint3']
HW = (32, 32)
NS = 1_000_000_000
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    return create_untrained_checkpoint(tmp_path_factory.mktemp('pn') / 'cam.ckpt', JOINTS, ['cam'],
                                       HW, preset='tiny', dt_s=0.1)


@pytest.fixture(scope='module')
def two_cam_ckpt(tmp_path_factory):
    return create_untrained_checkpoint(tmp_path_factory.mktemp('pn') / 'two.ckpt', JOINTS,
                                       ['top', 'wrist'], HW, preset='tiny', dt_s=0.1)


class Graph:
    """The node under test + a driver node, spun by one executor on a background thread."""

    def __init__(self, graph, params: dict, *, sim_time: bool = False, name: str = 'policy_node',
                 namespaces=('',), cams=(('cam', '/camera/image_raw'),)):
        self.graph = graph
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        if sim_time:
            overrides.append(Parameter('use_sim_time', value=True))
        self.node = graph.add(PolicyNode(name, context=graph.context,
                                         parameter_overrides=overrides))
        self.drv = graph.driver
        self.traj: dict[str, list] = {}
        self.chunks: dict[str, list] = {}
        self.status: list[PolicyStatus] = []
        self.joint_pub = {}
        self.cam_pub = {}
        for ns in namespaces:
            pre = f'/{ns}' if ns else ''
            self.traj[ns], self.chunks[ns] = [], []
            self.drv.create_subscription(JointTrajectory, f'{pre}/{name}/trajectory',
                                         self.traj[ns].append, 10)
            self.drv.create_subscription(ActionChunk, f'{pre}/{name}/action_chunk',
                                         self.chunks[ns].append, 10)
            self.joint_pub[ns] = self.drv.create_publisher(JointState, f'{pre}/joint_states',
                                                           qos_profile_sensor_data)
            for cam, topic in cams:
                compressed = topic.endswith('/compressed')
                self.cam_pub[(ns, cam)] = self.drv.create_publisher(
                    CompressedImage if compressed else Image, f'{pre}{topic}', qos_profile_sensor_data)
        self.drv.create_subscription(PolicyStatus, f'/{name}/status', self.status.append, STATUS_QOS)
        self.clock_pub = self.drv.create_publisher(Clock, '/clock', 10)
        self.cams = [c for c, _ in cams]
        graph.start()

    def close(self):
        self.node.stop_worker()
        self.graph.close()

    # ----------------------------------------------------------------- publishing
    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def joints(self, stamp_ns, ns='', names=('joint3', 'extra', 'joint1', 'joint2'),
               positions=(0.3, 9.0, 0.1, 0.2)):
        msg = JointState()
        msg.header.stamp = ns_to_stamp(stamp_ns)
        msg.name = list(names)
        msg.position = [float(p) for p in positions]
        self.joint_pub[ns].publish(msg)

    def image(self, stamp_ns, ns='', cam=None, array=None, encoding='rgb8', msg=None):
        cam = cam or self.cams[0]
        if msg is None:
            array = np.full((*HW, 3), 100, np.uint8) if array is None else array
            msg = numpy_to_image(array, encoding, stamp=ns_to_stamp(stamp_ns))
        self.cam_pub[(ns, cam)].publish(msg)

    def play(self, seconds, joint_hz=100.0, cam_hz=20.0, namespaces=None, clock=None,
             camera=True, joints=True, until=None):
        """Publish joint states and images stamped with `clock()` (default the node clock) for
        `seconds` of wall time (or until `until()` is true)."""
        clock = clock or self.now_ns
        namespaces = list(self.traj) if namespaces is None else namespaces
        t_end = time.monotonic() + seconds
        next_j = next_c = time.monotonic()
        while time.monotonic() < t_end:
            if until is not None and until():
                return True
            now = time.monotonic()
            if joints and now >= next_j:
                for ns in namespaces:
                    self.joints(clock(), ns)
                next_j += 1.0 / joint_hz
            if camera and now >= next_c:
                for ns in namespaces:
                    for cam in self.cams:
                        self.image(clock(), ns, cam)
                next_c += 1.0 / cam_hz
            time.sleep(0.002)
        return until is None or until()

    def wait(self, pred, timeout=30.0):
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if pred():
                return True
            time.sleep(0.02)
        return pred()

    def call(self, srv_type, name, request, timeout=30.0):
        client = self.drv.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f'no service {name}'
        future = client.call_async(request)
        assert self.wait(future.done, timeout), f'{name}: no response'
        return future.result()

    def fresh_status(self):
        """A PolicyStatus the node publishes now, as received (None if none came in 5 s)."""
        n = len(self.status)
        self.node._publish_status()
        return self.status[-1] if self.wait(lambda: len(self.status) > n, timeout=5.0) else None

    def counters(self, kind='rejected', until=None, timeout=30.0):
        """The node's counters as its PolicyStatus reports them. A status published a moment before
        may still be on its way, so with `until` this asks again until the counters satisfy it
        (they only grow) or the timeout passes, and returns the newest."""
        got = None

        def fresh():
            nonlocal got
            status = self.fresh_status()
            if status is not None:
                got = {c.name: c.count for c in getattr(status, kind)}
            return got is not None and (until is None or until(got))
        self.wait(fresh, timeout)
        assert got is not None, 'no PolicyStatus received'
        return got


@pytest.fixture
def graphs(background_graph):
    made = []

    def make(*args, **kwargs):
        made.append(Graph(background_graph('driver'), *args, **kwargs))
        return made[-1]
    yield make
    for g in made:
        g.close()


def base(ckpt, **extra):
    params = {'checkpoint': str(ckpt), 'backend': 'torch', 'warmup': False,
              'camera_topics': ['/camera/image_raw'], 'joint_states_topic': '/joint_states'}
    params.update(extra)
    return params


# --------------------------------------------------------------------------- tests
def test_trajectory_stamps_names_points_and_status(ckpt, graphs):
    g = graphs(base(ckpt, warmup=True))
    assert g.node.lifecycle_state == 'active'
    sent = set()                 # every observation stamp the driver published
    orig_image, orig_joints = g.image, g.joints

    def image(stamp_ns, *a, **k):
        sent.add(stamp_ns)
        orig_image(stamp_ns, *a, **k)

    def joints(stamp_ns, *a, **k):
        sent.add(stamp_ns)
        orig_joints(stamp_ns, *a, **k)
    g.image, g.joints = image, joints
    assert g.play(60.0, until=lambda: len(g.traj['']) >= 5), 'no trajectories'
    traj, chunk = g.traj[''][-1], None
    assert list(traj.joint_names) == JOINTS           # the checkpoint's order, not the driver's
    assert len(traj.points) == 16 - 1                  # horizon - first_action_index
    for i, p in enumerate(traj.points):
        assert stamp_to_sec(p.time_from_start) == pytest.approx(0.1 * i, abs=1e-9)
        assert len(p.positions) == 3 and np.all(np.isfinite(p.positions))
    # header stamp = the newest observation's stamp: exactly a published stamp (the stream that
    # lags, usually the 20 Hz camera), never an arrival or publish time
    stamps = [stamp_to_ns(t.header.stamp) for t in g.traj['']]
    assert all(s in sent for s in stamps), stamps
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert g.wait(lambda: len(g.chunks['']) >= 2)
    chunk = g.chunks[''][-1]
    assert chunk.first_action_index == 1 and chunk.n_action_steps == 8 and chunk.dt_s == 0.1
    assert len(chunk.trajectory.points) == 16 and chunk.scheduler == 'ddim'
    assert stamp_to_sec(chunk.trajectory.points[0].time_from_start) == pytest.approx(-0.1)
    assert chunk.sequence > g.chunks[''][0].sequence
    assert stamp_to_ns(chunk.header.stamp) in sent
    assert 0 < chunk.observation_age_s < 5 and chunk.inference_latency_s > 0
    # joints matched by name: the history holds (joint1, joint2, joint3) = (0.1, 0.2, 0.3)
    _, q = g.node.robots[''].history.latest('joint_states')
    np.testing.assert_allclose(q, [0.1, 0.2, 0.3])
    # status: latched (a late subscriber gets it), active, counting chunks, inputs listed
    late = []
    g.drv.create_subscription(PolicyStatus, '/policy_node/status', late.append, STATUS_QOS)
    assert g.wait(lambda: len(late) > 0)
    assert late[0].lifecycle_state == 'active'
    assert g.wait(lambda: late[-1].chunks_published > 0)     # 1 Hz: the next one counts chunks
    st = late[-1]
    assert st.enabled and st.backend.startswith('torch')
    assert {i.topic for i in st.inputs} == {'/joint_states', '/camera/image_raw'}
    held = {i.topic: i.buffered for i in st.inputs}     # what each ring holds, bounded
    assert 0 < held['/camera/image_raw'] <= 16 and held['/joint_states'] > 0, held
    # parameters are declared with descriptions
    desc = g.node.describe_parameter('max_observation_age_s')
    assert 'older' in desc.description


def test_rate_never_exceeds_policy_rate(ckpt, graphs):
    # trigger timer: at most one chunk per tick of 1/policy_rate_hz (fewer when loaded)
    g = graphs(base(ckpt, policy_rate_hz=5.0, trigger='timer'))
    assert g.play(60.0, until=lambda: len(g.traj['']) >= 2)
    n0, t0 = len(g.traj['']), time.monotonic()
    g.play(3.0, cam_hz=30.0)
    n, elapsed = len(g.traj['']) - n0, time.monotonic() - t0
    assert 1 <= n <= 5.0 * elapsed + 2, (n, elapsed)


def test_observation_trigger_spaces_chunks_by_stamps(ckpt, graphs):
    # trigger observation (default): chunks on a grid of 1/policy_rate_hz in observation time,
    # never closer than half a period, although the camera (30 Hz) and joints (100 Hz) are faster
    g = graphs(base(ckpt, policy_rate_hz=5.0))
    assert g.play(60.0, cam_hz=30.0, until=lambda: len(g.traj['']) >= 5)
    stamps = np.array([stamp_to_ns(t.header.stamp) for t in g.traj['']])
    assert np.all(np.diff(stamps) >= 0.5 * 0.2 * NS), np.diff(stamps)
    assert np.mean(np.diff(stamps)) >= 0.8 * 0.2 * NS, np.diff(stamps)


@pytest.mark.parametrize('problem, match', [
    ('missing', 'checkpoint file not found'),
    ('corrupt', 'bad.ckpt: '),                       # the file named, with the core's reason
    ('joints', 'joint_names has 2 names'),
    ('cameras', 'camera_topics has 2 topics'),
    ('empty', "'checkpoint' is empty"),
])
def test_bad_checkpoint_stays_unconfigured(ckpt, graphs, tmp_path, problem, match):
    params = base(ckpt)
    if problem == 'missing':
        params['checkpoint'] = str(tmp_path / 'nope.ckpt')
    elif problem == 'corrupt':
        (tmp_path / 'bad.ckpt').write_bytes(b'not a checkpoint at all')
        params['checkpoint'] = str(tmp_path / 'bad.ckpt')
    elif problem == 'joints':
        params['joint_names'] = ['a', 'b']
    elif problem == 'cameras':
        params['camera_topics'] = ['/a/image_raw', '/b/image_raw']
    else:
        params['checkpoint'] = ''
    g = graphs(params)
    assert g.node.lifecycle_state == 'unconfigured'
    assert match in g.node.last_skip_reason
    assert g.wait(lambda: g.status and match in g.status[-1].last_skip_reason)
    assert g.status[-1].lifecycle_state == 'unconfigured'
    g.play(1.0)
    assert g.traj[''] == []


def test_manual_lifecycle(ckpt, graphs):
    g = graphs(base(ckpt, autostart=False))
    assert g.node.lifecycle_state == 'unconfigured'
    g.node.trigger_configure()
    assert g.node.lifecycle_state == 'inactive'
    g.play(1.5)
    assert g.traj[''] == []                     # configured (histories fill) but not active
    g.node.trigger_activate()
    assert g.play(60.0, until=lambda: len(g.traj['']) >= 2)
    g.node.trigger_deactivate()
    time.sleep(0.3)
    n = len(g.traj[''])
    g.play(1.0)
    assert len(g.traj['']) == n
    g.node.trigger_cleanup()
    assert g.node.lifecycle_state == 'unconfigured' and g.node.robots == {}


def test_missing_and_stale_streams_give_reasons_and_no_chunk(ckpt, graphs):
    g = graphs(base(ckpt, max_observation_age_s=0.3))
    g.play(1.5, camera=False)
    assert g.traj[''] == []
    assert g.node.last_skip_reason == 'missing:/camera/image_raw'
    assert g.play(60.0, until=lambda: len(g.traj['']) >= 2)
    # the camera stops; joints keep coming
    assert g.play(60.0, camera=False,
                  until=lambda: g.node.last_skip_reason == 'stale:/camera/image_raw')
    n = len(g.traj[''])
    g.play(1.0, camera=False)
    assert len(g.traj['']) == n
    assert g.counters('skipped', until=lambda c: c.get('stale', 0) > 0).get('stale', 0) > 0


def test_bad_input_is_rejected_counted_and_never_published(ckpt, graphs):
    g = graphs(base(ckpt, resize_images=False))
    now = g.now_ns
    bad_img = np.zeros((*HW, 3), np.uint8)
    for k in range(30):
        t = now()
        g.joints(t, positions=(0.3, 0.0, float('nan'), 0.2))                   # NaN joint1
        g.joints(t, names=('joint1', 'joint2'), positions=(0.1, 0.2))          # joint3 missing
        g.joints(t, names=('joint1', 'joint2', 'joint3'), positions=(0.1, 0.2, float('inf')))
        g.joints(t + 10 * NS, names=JOINTS, positions=(0.1, 0.2, 0.3))         # future stamp
        g.joints(t - 100 * NS, names=JOINTS, positions=(0.1, 0.2, 0.3))        # far past
        g.joints(t, names=JOINTS, positions=(0.1, 0.2))                        # lengths differ
        msg = numpy_to_image(bad_img, 'rgb8', stamp=ns_to_stamp(t))
        msg.encoding = 'yuv422_weird'
        g.image(t, msg=msg)                                                    # unknown encoding
        g.image(t, array=np.zeros((48, 64, 3), np.uint8))                      # wrong size
        empty = numpy_to_image(bad_img, 'rgb8', stamp=ns_to_stamp(t))
        empty.data = []
        g.image(t, msg=empty)                                                  # empty data
        short = numpy_to_image(bad_img, 'rgb8', stamp=ns_to_stamp(t))
        short.data = short.data[:100]
        g.image(t, msg=short)                                                  # truncated data
        g.image(t + 10 * NS)                                                   # future image
        time.sleep(0.03)
    time.sleep(0.5)
    assert g.traj[''] == []
    keys = ('nan_position', 'missing_joint', 'future_stamp', 'old_stamp', 'length_mismatch',
            'unsupported_encoding', 'wrong_image_size', 'empty_image')
    rejected = g.counters(until=lambda c: all(c.get(key, 0) > 0 for key in keys))
    for key in keys:
        assert rejected.get(key, 0) > 0, (key, rejected)
    assert g.node.robots[''].history.sizes()['joint_states'] == 0
    # the truncated images were stored (decoding is lazy) but never made an observation
    g.play(2.0, camera=False)
    assert g.traj[''] == []
    # the node is alive and good input works
    assert g.play(60.0, until=lambda: len(g.traj['']) >= 2)


def test_wrong_size_images_are_resized_by_default(ckpt, graphs):
    g = graphs(base(ckpt))
    big = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    orig = g.image
    g.image = lambda stamp_ns, *a, **k: orig(stamp_ns, array=big)
    assert g.play(60.0, until=lambda: len(g.traj['']) >= 2)
    _, img = g.node.robots[''].history.latest('cam')
    img = img() if callable(img) else img                  # decoded lazily, or already
    assert img.shape == (*HW, 3) and img.dtype == np.uint8


def test_flood_keeps_memory_bounded(ckpt, graphs):
    g = graphs(base(ckpt, max_images_per_camera=8))
    hist = g.node.robots[''].history
    big = np.zeros((720, 1280, 3), np.uint8)
    msg = numpy_to_image(big, 'rgb8')
    t_end = time.monotonic() + 4.0
    next_img = time.monotonic()
    sizes = []
    while time.monotonic() < t_end:
        t = g.now_ns()
        for _ in range(10):                                   # ~1 kHz joint states (bursts)
            g.joints(t)
        if time.monotonic() >= next_img:                      # 30 Hz 1280x720
            msg.header.stamp = ns_to_stamp(t)
            g.image(t, msg=msg)
            next_img += 1 / 30
        sizes.append(hist.sizes())
        time.sleep(0.01)
    assert max(s['cam'] for s in sizes) <= 8
    # joints: bounded by the time window (max age + grid + tolerance), not by the flood
    assert max(s['joint_states'] for s in sizes) <= 4096
    assert g.wait(lambda: len(g.traj['']) > 0, timeout=10) or g.play(
        20.0, until=lambda: len(g.traj['']) > 0)


def test_services_enable_disable_and_reset(ckpt, graphs):
    g = graphs(base(ckpt))
    assert g.play(60.0, until=lambda: len(g.traj['']) >= 2)
    r = g.call(SetEnabled, '/policy_node/set_enabled', SetEnabled.Request(enabled=False))
    assert r.success
    time.sleep(0.3)
    n = len(g.traj[''])
    g.play(1.5)
    assert len(g.traj['']) == n
    assert g.node.last_skip_reason == 'disabled'
    assert g.wait(lambda: (st := g.fresh_status()) is not None and not st.enabled)
    r = g.call(SetEnabled, '/policy_node/set_enabled', SetEnabled.Request(enabled=True))
    assert r.success
    assert g.play(60.0, until=lambda: len(g.traj['']) > n)

    r = g.call(ResetHistory, '/policy_node/reset_history', ResetHistory.Request(robot_namespace='x'))
    assert not r.success and 'unknown robot namespace' in r.message
    # reset: the history is emptied and the next chunk needs a full new window
    r = g.call(ResetHistory, '/policy_node/reset_history', ResetHistory.Request())
    assert r.success
    assert g.node.robots[''].history.sizes() == {'joint_states': 0, 'cam': 0}
    t_reset = g.now_ns()
    n = len(g.traj[''])
    assert g.play(60.0, until=lambda: len(g.traj['']) > n)
    first = g.traj[''][n]
    assert stamp_to_ns(first.header.stamp) >= t_reset + 0.1 * NS - 0.05 * NS


def test_compressed_camera(ckpt, graphs):
    topic = '/camera/image_raw/compressed'
    g = graphs(base(ckpt, camera_topics=[topic]), cams=(('cam', topic),))
    rng = np.random.default_rng(0)
    g.image = lambda stamp_ns, ns='', cam='cam', **k: g.cam_pub[(ns, cam)].publish(
        rgb8_to_compressed(rng.integers(0, 255, (*HW, 3), dtype=np.uint8), 'jpeg',
                           stamp=ns_to_stamp(stamp_ns)))
    assert g.play(60.0, until=lambda: len(g.traj['']) >= 2)


def test_two_cameras_and_batched_robots(two_cam_ckpt, graphs):
    cams = (('top', '/top/image_raw'), ('wrist', '/wrist/image_raw'))
    g = graphs(base(two_cam_ckpt, robot_namespaces=['r1', 'r2'], joint_states_topic='joint_states',
                    camera_topics=['top/image_raw', 'wrist/image_raw']),
               namespaces=('r1', 'r2'), cams=cams)
    batches = []
    predict = g.node.policy.predict

    def spy(state, *a, **k):           # records the batch size of each call, runs the real thing
        batches.append(state.shape[0])
        return predict(state, *a, **k)
    g.node.policy.predict = spy
    assert g.play(60.0, until=lambda: len(g.traj['r1']) >= 3 and len(g.traj['r2']) >= 3)
    assert 2 in batches                                       # one batch for both robots
    c1, c2 = g.chunks['r1'][-1], g.chunks['r2'][-1]
    assert (c1.robot_namespace, c2.robot_namespace) == ('r1', 'r2')
    # robot r2 stops: r1 keeps getting chunks, r2's reason names its stale stream
    n1 = len(g.traj['r1'])
    assert g.play(60.0, namespaces=['r1'], until=lambda: len(g.traj['r1']) > n1 + 2
                  and 'r2: stale:/r2/' in g.node.last_skip_reason), g.node.last_skip_reason
    n2 = len(g.traj['r2'])
    g.play(1.0, namespaces=['r1'])
    assert len(g.traj['r2']) == n2


def test_sim_time_drives_the_node_and_a_backwards_jump_clears_history(ckpt, graphs):
    g = graphs(base(ckpt), sim_time=True)
    sim = {'t': 0}

    def tick(dt_ns=10_000_000):
        sim['t'] += dt_ns
        g.clock_pub.publish(Clock(clock=ns_to_stamp(sim['t'])))

    def run(seconds_wall, until=None, joints=True):
        t_end = time.monotonic() + seconds_wall
        k = 0
        while time.monotonic() < t_end and not (until and until()):
            tick()
            time.sleep(0.02)            # simulated time at about half the wall rate
            if joints:
                g.joints(sim['t'])
            if k % 5 == 0:
                g.image(sim['t'])
            k += 1
    # no /clock yet: nothing, and the reason says so
    time.sleep(0.5)
    assert g.traj[''] == []
    sim['t'] = 100 * NS
    run(40.0, until=lambda: len(g.traj['']) >= 6)
    assert len(g.traj['']) >= 6
    stamps = [stamp_to_ns(t.header.stamp) for t in g.traj['']]
    assert all(100 * NS < s <= sim['t'] for s in stamps), stamps     # simulated, not wall time
    # ticks follow the simulated clock: 10 Hz in simulated time, i.e. at most 5 Hz of wall time
    # here (ticks on the wall clock would give chunks 0.05 s apart in simulated time)
    gaps = np.diff(stamps) * 1e-9
    assert np.min(gaps) >= 0.07, gaps
    # replay restart: the clock jumps back to 5 s
    before = g.counters('skipped').get('clock_jump', 0)
    sim['t'] = 5 * NS
    n = len(g.traj[''])
    run(30.0, until=lambda: len(g.traj['']) >= n + 2)
    jumps = g.counters('skipped', until=lambda c: c.get('clock_jump', 0) > before)
    assert jumps.get('clock_jump', 0) > before, jumps
    after = [stamp_to_ns(t.header.stamp) for t in g.traj[''][n:]]
    assert after and all(5 * NS < s < 50 * NS for s in after), after
    # the first chunk after the jump used only post-jump observations (a full new window)
    assert after[0] >= 5 * NS + 100_000_000 - 50_000_000


ARM_URDF = """<robot name="three">
  <link name="base"/><link name="tool0"/>
  <link name="l1"><collision><origin xyz="0.1 0 0"/><geometry><box size="0.2 0.03 0.02"/></geometry>
    </collision></link>
  <link name="l2"><collision><origin xyz="0.1 0 0"/><geometry><box size="0.2 0.03 0.02"/></geometry>
    </collision></link>
  <link name="l3"><collision><origin xyz="0.05 0 0"/><geometry><box size="0.1 0.02 0.02"/>
    </geometry></collision></link>
  <joint name="joint1" type="revolute"><parent link="base"/><child link="l1"/>
    <axis xyz="0 0 1"/><limit lower="-2.5" upper="2.5" effort="1" velocity="3"/></joint>
  <joint name="joint2" type="revolute"><parent link="l1"/><child link="l2"/><origin xyz="0.2 0 0"/>
    <axis xyz="0 0 1"/><limit lower="-2.5" upper="2.5" effort="1" velocity="3"/></joint>
  <joint name="joint3" type="revolute"><parent link="l2"/><child link="l3"/><origin xyz="0.2 0 0"/>
    <axis xyz="0 0 1"/><limit lower="-2.5" upper="2.5" effort="1" velocity="3"/></joint>
  <joint name="tool" type="fixed"><parent link="l3"/><child link="tool0"/><origin xyz="0.1 0 0"/></joint>
</robot>"""


def test_guidance_publishes_only_chunks_inside_the_urdf_limits(ckpt, graphs, tmp_path):
    """A random network (actions over +-3.14 rad, jumping between steps), a URDF with +-2.5 rad
    and 3 rad/s limits: every published chunk is inside the position limits, the others are
    gated (counted, not published), and the status says guidance ran."""
    urdf = tmp_path / 'three.urdf'
    urdf.write_text(ARM_URDF)
    g = graphs(base(ckpt, guidance=True, robot_description_file=str(urdf)))

    def gated() -> int:      # the node's own counter (a status message may lag behind it)
        return g.node.book.snapshot()[0].skipped.get('gated', 0)
    g.play(90.0, until=lambda: len(g.traj['']) >= 2 or gated() >= 3)
    for traj in list(g.traj['']):
        pos = np.array([p.positions for p in traj.points])
        assert np.all(np.abs(pos) <= 2.5 + 1e-9), pos
    assert len(g.traj['']) >= 2 or gated() >= 3, (len(g.traj['']), g.node.last_skip_reason)
    assert g.node.worker.last_backend.endswith('+guidance')
    if g.traj['']:
        assert 0.0 <= g.node.book.snapshot()[0].limit_margin_rad <= 2.5


def test_guidance_takes_obstacles_from_a_latched_marker_topic(ckpt, graphs, tmp_path):
    """obstacles_topic: a MarkerArray published (latched) before the node subscribed reaches the
    guidance between two predictions, added to the parameter's obstacles; a marker in another
    frame is counted and left out, and a newer marker of the same (ns, id) replaces its own.
    obstacles_required (default): no chunk before the first message, nor while a refused marker
    stands (not re-sent readable or deleted), even across messages without it; chunks after."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from visualization_msgs.msg import Marker, MarkerArray
    urdf = tmp_path / 'three.urdf'
    urdf.write_text(ARM_URDF)
    g = graphs(base(ckpt, guidance=True, robot_description_file=str(urdf),
                    obstacles=['sphere 0.3 0.3 0 0.05'], obstacles_topic='/obstacles'))
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    def sampled() -> int:    # chunks published or gated (the random network breaks the limits)
        return len(g.traj['']) + g.node.book.snapshot()[0].skipped.get('gated', 0)
    g.play(60.0, until=lambda: g.node.worker.reason == 'waiting_for_obstacles')
    assert g.node.worker.reason == 'waiting_for_obstacles' and not sampled()
    pub = g.drv.create_publisher(MarkerArray, '/obstacles', latched)

    def marker(kind, x, frame='base', mid=0):
        m = Marker(type=kind, action=Marker.ADD, id=mid)
        m.header.frame_id = frame
        m.pose.position.x, m.pose.orientation.w = x, 1.0
        m.scale.x = m.scale.y = m.scale.z = 0.05
        return m
    pub.publish(MarkerArray(markers=[marker(Marker.CYLINDER, 0.4), marker(Marker.CUBE, 0.5, mid=1),
                                     marker(Marker.SPHERE, 0.6, frame='camera', mid=2)]))

    def kinds():
        return [o.kind for o in g.node.policy.guidance.c.obstacles]
    assert g.play(90.0, until=lambda: kinds() == ['sphere', 'cylinder', 'box']), kinds()
    assert g.counters(until=lambda c: c.get('obstacle_frame', 0) >= 1)['obstacle_frame'] >= 1
    g.play(30.0, until=lambda: g.node.worker.reason == 'obstacles_incomplete')
    assert g.node.worker.reason == 'obstacles_incomplete' and not sampled()
    pub.publish(MarkerArray(markers=[marker(Marker.SPHERE, 0.45)]))       # id 0 again: replaced
    assert g.play(90.0, until=lambda: kinds() == ['sphere', 'sphere', 'box']), kinds()
    g.play(5.0)
    assert g.node.worker.reason == 'obstacles_incomplete' and not sampled()   # id 2 unknown
    pub.publish(MarkerArray(markers=[Marker(action=Marker.DELETE, id=2)]))  # gone: all known
    assert g.play(90.0, until=sampled), g.node.worker.reason
    assert g.node.policy.guidance.c.obstacles[1].centre == (0.45, 0.0, 0.0)


def test_real_time_chunking_freezes_the_actions_until_arrival_and_added_delay_ages_chunks(
        ckpt, graphs):
    """execution rtc, a fixed expected delay of 0.2 s and an artificial one of 0.15 s: each
    chunk leaves at least 0.15 s after its observation, and from the second on its actions up
    to 0.2 s after its stamp are the previous chunk's at the same times (as the follower
    receives them), so that the follower can switch onto it without averaging."""
    g = graphs(base(ckpt, execution='rtc', inference_delay_s=0.2, added_delay_s=0.15))
    assert g.play(90.0, until=lambda: len(g.chunks['']) >= 4), 'no chunks'
    assert all(c.observation_age_s >= 0.15 for c in g.chunks[''])
    assert g.node.worker.last_backend.startswith('torch+rtc')
    compared = 0
    for prev, new in zip(g.chunks[''][1:], g.chunks[''][2:]):
        t_prev = stamp_to_sec(prev.header.stamp) + np.array(
            [stamp_to_sec(p.time_from_start) for p in prev.trajectory.points])
        q_prev = np.array([p.positions for p in prev.trajectory.points])
        t0 = stamp_to_sec(new.header.stamp)
        for p in new.trajectory.points:
            t = t0 + stamp_to_sec(p.time_from_start)
            if t - t0 >= 0.2 - 1e-9 or not t_prev[0] <= t <= t_prev[-1]:
                continue
            expected = [np.interp(t, t_prev, q_prev[:, j]) for j in range(q_prev.shape[1])]
            # 1e-4: stamps of 1.8e9 s in float64 seconds (2e-7 s) and the random network's
            # actions jumping ~3 rad per 0.1 s step: the interpolation times differ by that much
            np.testing.assert_allclose(p.positions, expected, atol=1e-4)
            compared += 1
    assert compared >= 2


def test_end_effector_checkpoint_observes_and_publishes_tip_poses_of_the_robot_it_runs_on(
        graphs, tmp_path):
    """An end-effector checkpoint (trained on the 3-joint arm) on the 4-joint arm: the node takes
    that arm's 4 joint states, turns them into its tip pose with robot_description_file (not the
    checkpoint's URDF), and publishes ActionChunks of poses only (no joint trajectory); a
    checkpoint's space that the robot's URDF does not fit leaves the node unconfigured."""
    from dp_common.ee_space import EndEffectorSpace
    from dp_common.rotations import matrix_to_rot6d, quat_to_matrix
    from dp_sim.env import default_urdf_path, model_path
    space = EndEffectorSpace(default_urdf_path(), 'tool0', JOINTS).to_dict()
    lo = [0.2, -0.12, 0.02, 0.9, -0.4, 0.0, -0.4, 0.9, 0.0]
    hi = [0.45, 0.12, 0.02, 1.0, 0.4, 0.0, 0.4, 1.0, 0.0]
    path = create_untrained_checkpoint(tmp_path / 'ee.ckpt', JOINTS, ['cam'], HW, preset='tiny',
                                       dt_s=0.1, action_min=lo, action_max=hi, action_space=space)
    arm4 = str(model_path('arm4.urdf'))
    joints4 = JOINTS + ['joint4']
    g = graphs(base(path, joint_names=joints4, robot_description_file=arm4, tip_link='tool0'))
    assert g.node.lifecycle_state == 'active'
    q4 = [-1.3678, 1.7554, 1.3912, -1.7779]
    g.joints = lambda stamp_ns, ns='', **_: Graph.joints(g, stamp_ns, ns, names=joints4,
                                                          positions=q4)
    assert g.play(60.0, until=lambda: len(g.chunks['']) >= 3), g.counters('skipped')
    chunk = g.chunks[''][-1]
    assert chunk.action_space == 'ee_pose' and chunk.ee_link == 'tool0'
    assert chunk.header.frame_id == 'world' and list(chunk.trajectory.joint_names) == []
    assert len(chunk.poses) == len(chunk.trajectory.points) == 16
    assert all(len(p.positions) == 0 for p in chunk.trajectory.points)
    pos = np.array([[p.position.x, p.position.y, p.position.z] for p in chunk.poses])
    quat = np.array([[p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z]
                     for p in chunk.poses])
    assert np.allclose(np.linalg.norm(quat, axis=1), 1.0)
    assert np.all(pos >= np.array(lo[:3]) - 1e-6) and np.all(pos <= np.array(hi[:3]) + 1e-6)
    assert np.allclose(pos[:, 2], 0.02)                         # the constant height stays exact
    assert np.allclose(matrix_to_rot6d(quat_to_matrix(quat))[:, [2, 5]], 0.0, atol=1e-6)
    assert g.traj[''] == []                                     # no joint trajectory
    # the observation it conditioned on: arm4's tip pose, by arm4's URDF
    seen = g.node.worker.ee.vectors(np.array(q4))
    assert np.allclose(seen, EndEffectorSpace(arm4, 'tool0', joints4).vectors(q4))
    # the robot's joints do not fit the URDF it names: configure fails and says why
    bad = graphs(base(path, joint_names=JOINTS, robot_description_file=arm4), name='policy_bad')
    assert bad.node.lifecycle_state == 'unconfigured'
    assert 'moves joints' in bad.node.last_skip_reason


def test_checkpoint_trained_on_masked_images_gets_its_robot_painted_out(graphs, tmp_path):
    """A checkpoint trained with the robot painted out of its camera (dp_train --mask-robot): the
    node paints the robot it drives (robot_description_file, its joint states) out of each frame
    before inference, as dp_common.robot_mask does in training; without a URDF it stays
    unconfigured and says why."""
    import math
    from dp_common.ee_space import EndEffectorSpace
    from dp_common.robot_mask import RobotMask
    from dp_sim.env import default_urdf_path, model_path
    space = EndEffectorSpace(default_urdf_path(), 'tool0', JOINTS).to_dict()
    f = 48 / math.tan(math.radians(47) / 2)               # the overhead camera at 96 x 96
    spec = {'frame': 'camera_optical_frame', 'K': [f, f, 48.0, 48.0], 'size': [96, 96],
            'margin_m': 0.01}
    path = create_untrained_checkpoint(tmp_path / 'm.ckpt', JOINTS, ['cam'], HW, preset='tiny',
                                       action_space=space, robot_mask={'cam': spec})
    arm4 = str(model_path('arm4.urdf'))
    joints4 = JOINTS + ['joint4']
    q4 = [-1.3678, 1.7554, 1.3912, -1.7779]
    g = graphs(base(path, joint_names=joints4, robot_description_file=arm4, tip_link='tool0'))
    assert g.node.lifecycle_state == 'active'
    seen = []
    predict = g.node.policy.predict
    g.node.policy.predict = lambda state, images, **kw: (seen.append(images['cam'].copy()),
                                                         predict(state, images, **kw))[1]
    pattern = (np.arange(HW[0] * HW[1] * 3).reshape(*HW, 3) * 7 % 251).astype(np.uint8)
    g.joints = lambda stamp_ns, ns='', **_: Graph.joints(g, stamp_ns, ns, names=joints4,
                                                          positions=q4)
    g.image = lambda stamp_ns, ns='', cam=None, **_: Graph.image(g, stamp_ns, ns, cam,
                                                                 array=pattern)
    assert g.play(60.0, until=lambda: len(seen) >= 2), g.counters('skipped')
    expected = RobotMask.from_spec(arm4, joints4, spec, HW).paint(pattern, q4)
    assert (expected != pattern).any()                   # the arm is in view: some pixels change
    assert np.array_equal(seen[-1][0, -1], expected)     # (B, n_obs, H, W, 3): the last frame
    # a joint-space checkpoint trained so needs the robot's URDF to paint it out
    plain = create_untrained_checkpoint(tmp_path / 'j.ckpt', JOINTS, ['cam'], HW, preset='tiny',
                                        robot_mask={'cam': spec})
    bad = graphs(base(plain), name='policy_mask_bad')
    assert bad.node.lifecycle_state == 'unconfigured'
    assert 'robot_description_file' in bad.node.last_skip_reason
