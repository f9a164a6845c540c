"""dp_eval over DDS with real processes: bag player into an rclpy subscriber, live replay through
policy_node + follower_node, closed loop through sim.launch.py's graph (tiny random checkpoint:
success is not expected, the machinery is what is tested)."""
import json
import threading
import time

import pytest

pytestmark = pytest.mark.graph

POLICY_YAML = """policy_node:
  ros__parameters:
    backend: torch
    warmup: false
"""
SIM_YAML = """sim_node:
  ros__parameters:
    max_episode_s: 3.0
    joint_state_rate_hz: 50.0
"""


def _share(*parts):
    from dp_bringup.starter import share_file
    return share_file('dp_bringup', *parts)


def test_player_publishes_over_dds_with_clock(bags):
    import rclpy
    from rclpy.qos import QoSProfile
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, JointState

    from dp_eval import player
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('dp_eval_test_sub', context=ctx)
    got = {'js': [], 'img': [], 'clock': []}
    node.create_subscription(JointState, '/joint_states', lambda m: got['js'].append(m),
                             QoSProfile(depth=500))
    node.create_subscription(Image, '/camera/image_raw', lambda m: got['img'].append(m),
                             QoSProfile(depth=100))
    node.create_subscription(Clock, '/clock', lambda m: got['clock'].append(
        m.clock.sec * 10**9 + m.clock.nanosec), QoSProfile(depth=1000))
    from rclpy.executors import SingleThreadedExecutor
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    try:
        stats = player.play(bags['mcap'][0], player.PlayOptions(rate=2.0, clock=True, delay_s=0.5,
                                                                  wait_for_subscribers_s=20),
                            progress=False)
        time.sleep(1.0)
        assert stats.total > 300 and stats.error is None
        assert len(got['js']) >= 0.9 * 151 and len(got['img']) >= 0.9 * 31
        assert got['img'][0].encoding == 'bgr8' and got['img'][0].step == 32 * 3 + 8
        assert got['clock'] == sorted(got['clock']) and len(got['clock']) > 100
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


@pytest.mark.slow
def test_live_replay_records_and_compares(tiny_ckpt, tmp_path):
    from dp_eval import report, synthetic
    from dp_eval.live import LiveConfig, run_live
    bag = synthetic.write_demo_bag(tmp_path / 'in', synthetic.SyntheticSpec(duration_s=4.0),
                                   'sqlite3')
    (tmp_path / 'policy.yaml').write_text(POLICY_YAML)
    cfg = LiveConfig(bag=str(bag), out_bag=str(tmp_path / 'out'), launch_file='real_arm.launch.py',
                     launch_args={'robot': 'embedded_arm', 'checkpoint': tiny_ckpt,
                                  'use_sim_time': 'true',
                                  'policy_params_file': str(tmp_path / 'policy.yaml')},
                     log_dir=str(tmp_path / 'logs'), rate=0.5, progress=False)
    res = run_live(cfg)
    assert res['errors'] == [], res['errors']
    c = res['metrics']['comparison']
    # 10 Hz policy over 4 s of bag: a loaded 2-core machine may drop many ticks
    assert c['chunks'] >= 3 and c['error']['count_per_step'][1] > 0
    assert res['recorded_messages']['/policy_node/action_chunk'] == c['chunks']
    assert res['recorded_messages'].get('/policy_node/trajectory', 0) > 0
    assert all(code is not None for code in res['exit_codes'].values()), res['exit_codes']
    paths = report.write_report([res], tmp_path / 'rep')
    for name in ('live_0.png', 'examples_0.png', 'error_by_horizon.png'):
        assert (tmp_path / 'rep' / 'plots' / name).is_file(), name
    assert json.loads(paths['json'].read_text())['results'][0]['kind'] == 'live'


@pytest.fixture(scope='module')
def two_checkpoint_run(tiny_ckpt, tmp_path_factory):
    """`dp_eval closed-loop A B --record` once for the tests below: (rc, out dir, stdout, s)."""
    import contextlib
    import io

    from dp_policy.checkpoint import create_untrained_checkpoint

    from dp_eval import cli
    tmp_path = tmp_path_factory.mktemp('two')
    other = create_untrained_checkpoint(tmp_path / 'other.ckpt', ['joint1', 'joint2', 'joint3'],
                                        ['camera'], (24, 32), preset='tiny', seed=1)
    (tmp_path / 'policy.yaml').write_text(POLICY_YAML)
    (tmp_path / 'sim.yaml').write_text(SIM_YAML)
    out = tmp_path / 'out'
    t0 = time.monotonic()
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = cli.main(['closed-loop', tiny_ckpt, other, '--labels', 'a', 'b', '--episodes', '2',
                       '--seed', '5', '--record', '--out', str(out), '--no-progress',
                       '--launch-args', f'sim_params_file:={tmp_path / "sim.yaml"}',
                       f'policy_params_file:={tmp_path / "policy.yaml"}'])
    return rc, out, stdout.getvalue(), time.monotonic() - t0


@pytest.mark.slow
def test_closed_loop_two_checkpoints_two_episodes_with_bags(two_checkpoint_run):
    """`dp_eval closed-loop A B --record`: one sim + follower, policy_node restarted for B, the
    same seeds for both, a bag per checkpoint, the report side by side, every process stopped."""
    from dp_eval import bagio
    rc, out, stdout, elapsed = two_checkpoint_run
    data = json.loads((out / 'result.json').read_text())['results']
    assert rc == 0, [r['errors'] for r in data]
    assert [r['label'] for r in data] == ['a', 'b']
    for r in data:
        eps = r['episodes']
        assert not r['partial'] and len(eps) == 2
        assert [e['seed'] for e in eps] == [5, 6]
        assert eps[1]['episode'] == eps[0]['episode'] + 1
        assert all(e['done'] and not e['timed_out'] for e in eps)
        assert all(e['episode_time_s'] >= 2.9 or e['success'] for e in eps)   # sim limit: 3 s
        assert sum(e['chunks'] for e in eps) > 0, [e['chunks'] for e in eps]
        assert r['metrics']['latency']['n'] == sum(e['chunks'] for e in eps)
        assert set(r['exit_codes']) == {'sim_node', 'policy_node', 'follower_node'}
        assert all(code is not None for code in r['exit_codes'].values())
        info = bagio.bag_info(r['bag'])
        for topic in ('/task_status', '/joint_states', '/camera/image_raw',
                      '/camera/camera_info', '/policy_node/action_chunk'):
            assert info['topics'][topic]['count'] > 0, topic
    assert data[0]['checkpoint'] != data[1]['checkpoint']
    assert (out / 'logs' / 'policy_node.1.log').is_file()      # the first policy's log is kept
    assert '<th>a</th><th>b</th>' in (out / 'report.html').read_text()
    assert '== a (closed_loop)' in stdout
    assert elapsed < 900


@pytest.mark.slow
def test_closed_loop_report_shows_paths_fans_and_videos(two_checkpoint_run):
    """The recorded runs become figures and videos in the report (dp_eval.rollouts), and the
    report loads in a real browser (Chromium headless) where one is installed."""
    rc, out, _, _ = two_checkpoint_run
    data = json.loads((out / 'result.json').read_text())['results']
    for name in ('paths.png', 'clearance.png', 'fans.png'):
        assert (out / 'plots' / name).stat().st_size > 5000, name
    for i, r in enumerate(data):
        # 2 episodes each: every failure gets a video, and up to 2 successes.
        assert len(r['rollouts']['videos']) == 2, r['rollouts']
        assert set(r['rollouts']['clearance_m']) == {str(e['episode']) for e in r['episodes']}
        for rel in r['rollouts']['videos']:
            assert (out / rel).stat().st_size > 1000 and rel.startswith(f'videos/{i}_')
    html = (out / 'report.html').read_text()
    assert html.count('<video ') == 4 and 'plots/fans.png' in html
    from dp_eval.browser import check_report, find_chromium
    if find_chromium() is None:
        pytest.skip('no Chromium: apt-get install chromium (scripts/browser.sh)')
    assert check_report(out / 'report.html') == []


@pytest.mark.parametrize('from_desired', [False, True], ids=['jazzy_defaults',
                                                         'interpolate_from_desired_state'])
def test_closed_loop_through_the_trajectory_controller_with_jazzy_rules(tiny_ckpt, tmp_path,
                                                                       from_desired):
    """Issue 17, findings 1 and 2: the follower's joint_trajectory output through the embedded
    simulation's trajectory controller with joint_trajectory_controller's Jazzy rules
    (allow_nonzero_velocity_at_trajectory_end: false): every rolling trajectory is accepted (a
    last point that moves would be refused: 'Velocity of last trajectory point ... is not zero'),
    and the arm tracks the follower (no tracking fault: 0 in 3 runs of each case), whether each
    trajectory starts from the measured state (Jazzy's default) or from the last setpoint
    (interpolate_from_desired_state, config/robots/controllers/)."""
    from dp_eval import cli
    (tmp_path / 'policy.yaml').write_text(POLICY_YAML)
    (tmp_path / 'sim.yaml').write_text(
        SIM_YAML + '    jtc_distro: jazzy\n'
        + ('    jtc_interpolate_from_desired_state: true\n' if from_desired else ''))
    out = tmp_path / 'out'
    rc = cli.main(['closed-loop', tiny_ckpt, '--episodes', '2', '--seed', '5', '--out', str(out),
                   '--no-progress', '--launch-args', 'output_mode:=joint_trajectory',
                   f'sim_params_file:={tmp_path / "sim.yaml"}',
                   f'policy_params_file:={tmp_path / "policy.yaml"}'])
    (r,) = json.loads((out / 'result.json').read_text())['results']
    assert rc == 0, r['errors']
    assert len(r['episodes']) == 2 and sum(e['chunks'] for e in r['episodes']) > 0
    sim_log = (out / 'logs' / 'sim_node.log').read_text()
    assert (f'jazzy rules (allow_nonzero_velocity_at_trajectory_end False, '
            f'interpolate_from_desired_state {from_desired})') in sim_log
    assert r['controller_rejections'] == 0, sim_log[-3000:]
    assert r['tracking_faults'] == 0, (out / 'logs' / 'follower_node.log').read_text()[-3000:]


def test_closed_loop_missing_checkpoint_is_a_clear_error(tmp_path):
    from dp_eval.closed_loop import ClosedLoopConfig, ClosedLoopError, run_closed_loop
    cfg = ClosedLoopConfig(episodes=1, launch_args={
        'checkpoint': str(tmp_path / 'none.ckpt'),
        'sim_params_file': _share('config', 'follower.yaml'),
        'policy_params_file': _share('config', 'follower.yaml')}, progress=False)
    with pytest.raises(ClosedLoopError, match='none.ckpt does not exist'):
        run_closed_loop(cfg)


def test_closed_loop_policy_configure_failure_is_reported(tmp_path):
    """A damaged checkpoint file: policy_node fails to configure, the runner says why (from its
    PolicyStatus) instead of waiting for the start-up timeout, and stops every process."""
    from dp_eval.closed_loop import ClosedLoopConfig, ClosedLoopError, run_closed_loop
    bad = tmp_path / 'damaged.ckpt'
    bad.write_bytes(b'PK\x03\x04 not really a checkpoint' * 10)
    (tmp_path / 'policy.yaml').write_text(POLICY_YAML)
    (tmp_path / 'sim.yaml').write_text(SIM_YAML)
    cfg = ClosedLoopConfig(episodes=1, startup_timeout_s=300, launch_args={
        'checkpoint': str(bad), 'sim_params_file': str(tmp_path / 'sim.yaml'),
        'policy_params_file': str(tmp_path / 'policy.yaml')},
        log_dir=str(tmp_path / 'logs'), progress=False)
    t0 = time.monotonic()
    with pytest.raises(ClosedLoopError, match='policy_node.*configure failed.*damaged.ckpt'):
        run_closed_loop(cfg)
    assert time.monotonic() - t0 < 250


def test_closed_loop_end_effector_checkpoint_drives_the_four_joint_arm(tmp_path):
    """Cross-embodiment wiring: an end-effector checkpoint made for the 3-joint arm
    (config/robots/embedded_arm4.yaml, sim.launch.py's graph, real DDS): the simulation runs the
    4-joint arm, the policy node observes its tip pose, the follower turns the chunks' poses into
    its 4 joint positions and commands them (random weights: success is not expected)."""
    from dp_common.ee_space import EndEffectorSpace
    from dp_policy.checkpoint import create_untrained_checkpoint
    from dp_sim.env import default_urdf_path

    from dp_eval import cli
    space = EndEffectorSpace(default_urdf_path(), 'tool0', ['joint1', 'joint2', 'joint3'])
    # random weights: outputs scattered over the normaliser's box; a small box (tip within 2 cm
    # of (0.27, 0.06), yaw within 0.02 rad of 0) keeps consecutive poses close enough for the
    # follower to take the chunks (a wider one: ik_discontinuous, rightly)
    lo = [0.26, 0.05, 0.02, 0.9998, -0.02, 0.0, -0.02, 0.9998, 0.0]
    hi = [0.28, 0.07, 0.02, 1.0, 0.02, 0.0, 0.02, 1.0, 0.0]
    ckpt = create_untrained_checkpoint(tmp_path / 'ee.ckpt', space.joint_names, ['camera'],
                                       (24, 32), preset='tiny', action_min=lo, action_max=hi,
                                       action_space=space.to_dict())
    (tmp_path / 'policy.yaml').write_text(POLICY_YAML)
    (tmp_path / 'sim.yaml').write_text(SIM_YAML)
    out = tmp_path / 'out'
    rc = cli.main(['closed-loop', ckpt, '--episodes', '2', '--seed', '5', '--out', str(out),
                   '--no-progress', '--record', '--launch-args',
                   f'robot_config:={_share("config", "robots", "embedded_arm4.yaml")}',
                   f'sim_params_file:={tmp_path / "sim.yaml"}',
                   f'policy_params_file:={tmp_path / "policy.yaml"}'])
    (r,) = json.loads((out / 'result.json').read_text())['results']
    assert rc == 0, r['errors']
    assert len(r['episodes']) == 2 and sum(e['chunks'] for e in r['episodes']) > 0
    assert r['follower_chunks_accepted'] > 0, r['follower_rejections']
    assert r['tracking_faults'] == 0
    policy_log = (out / 'logs' / 'policy_node.log').read_text()
    assert "joints ['joint1', 'joint2', 'joint3', 'joint4'], end-effector poses of tool0" in policy_log
    # the recorded run's figures use the 4-joint arm's own kinematics (its robot config's URDF)
    from dp_eval import bagio
    from dp_eval.rollouts import read_rollouts, robot_urdf
    assert robot_urdf(r).endswith('arm4.urdf')
    assert bagio.bag_info(r['bag'])['topics']['/policy_node/action_chunk']['count'] > 0
    rollouts, _ = read_rollouts(r['bag'], urdf=robot_urdf(r))
    assert rollouts and all(len(x.tip) > 10 for x in rollouts)
    assert r['errors'] == [] and (out / 'plots' / 'paths.png').is_file()
