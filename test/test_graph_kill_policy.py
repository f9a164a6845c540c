"""Acceptance: killing the policy process in the middle of an episode leaves the arm holding
within the follower's watchdog time, without a command jump.

The whole sim.launch.py graph runs as separate processes (dp_bringup's starter: sim_node,
policy_node with the committed checkpoint, follower_node), on simulated time. This test records
the follower's command stream (/forward_position_controller/commands) with the simulated time of
its arrival, SIGKILLs policy_node while the arm is moving, and checks:
- every command step stays within the velocity limit (no jump), before and after the kill;
- the commands stop changing within watchdog_timeout_s + the deceleration time (v_max / a_max)
  + one policy period of slack, and stay constant afterwards (holding);
- the follower reports STATE_HOLDING and a watchdog trip.
"""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.graph, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / 'models' / 'reach_image.ckpt'


def _follower_params() -> dict:
    params = yaml.safe_load((ROOT / 'config' / 'follower.yaml').read_text())['follower_node']['ros__parameters']
    robot = yaml.safe_load((ROOT / 'config' / 'robots' / 'embedded_arm.yaml').read_text())
    params.update(robot['follower_node']['ros__parameters'])
    return params


def test_killing_the_policy_holds_the_arm(tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import Float64MultiArray

    from dp_bringup.graphs import GRAPHS
    from dp_bringup.starter import ProcessGroup
    from dp_msgs.msg import FollowerStatus
    from dp_msgs.srv import ResetEpisode

    assert CKPT.is_file(), 'the committed checkpoint models/reach_image.ckpt is missing'
    params = _follower_params()
    watchdog_s = float(params['watchdog_timeout_s'])
    v_max = np.broadcast_to(np.asarray(params['max_velocity_rad_s'], float), (3,))
    a_max = np.broadcast_to(np.asarray(params['max_acceleration_rad_s2'], float), (3,))
    decel_s = float(np.max(v_max / a_max))

    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('kill_policy_probe', context=ctx)
    lock = threading.Lock()
    clock = {'t': None}
    commands: list[tuple[float, np.ndarray]] = []  # (sim time at arrival, command)
    statuses: list[tuple[float, FollowerStatus]] = []

    def on_clock(msg):
        with lock:
            clock['t'] = msg.clock.sec + msg.clock.nanosec * 1e-9

    def on_cmd(msg):
        with lock:
            if clock['t'] is not None:
                commands.append((clock['t'], np.asarray(msg.data, float)))

    def on_status(msg):
        with lock:
            statuses.append((clock['t'] or 0.0, msg))

    node.create_subscription(Clock, '/clock', on_clock, QoSProfile(depth=10))
    node.create_subscription(Float64MultiArray, '/forward_position_controller/commands', on_cmd,
                             QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(FollowerStatus, '/follower_node/status', on_status,
                             QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    reset = node.create_client(ResetEpisode, '/sim_node/reset_episode')
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()

    specs = GRAPHS['sim.launch.py'].build({'checkpoint': str(CKPT)})
    group = ProcessGroup(specs, log_dir=tmp_path / 'logs', quiet=True)
    group.start()
    try:
        assert reset.wait_for_service(timeout_sec=300), 'sim_node did not come up'
        fut = reset.call_async(ResetEpisode.Request(seed=4242))
        deadline = time.monotonic() + 30
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fut.done() and fut.result().success

        # wait until the arm is following the policy and has moved for a while (policy_node loads
        # and warms up its checkpoint first: tens of seconds, minutes on a loaded machine)
        deadline = time.monotonic() + 480
        moving_since = None
        while time.monotonic() < deadline:
            time.sleep(0.1)
            with lock:
                following = bool(statuses) and statuses[-1][1].state == FollowerStatus.STATE_FOLLOWING
                t = clock['t']
            if following and moving_since is None:
                moving_since = t
            if moving_since is not None and t is not None and t - moving_since > 0.8:
                break
            assert group.dead_required() == [], f'a node died: {group.dead_required()}'
        else:
            logs = {p.name: p.read_text()[-2000:] for p in (tmp_path / 'logs').glob('*.log')}
            pytest.fail(f'the follower never followed the policy; logs: {logs}')

        with lock:
            t_kill = clock['t']
        group.kill('policy_node', signal.SIGKILL)
        # record ~2.5 s of simulated time after the kill
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.1)
            with lock:
                if clock['t'] - t_kill > watchdog_s + decel_s + 1.5:
                    break
        with lock:
            cmds = list(commands)
            last_status = statuses[-1][1] if statuses else None
    finally:
        group.stop(grace_s=5)
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)

    times = np.array([c[0] for c in cmds])
    values = np.stack([c[1] for c in cmds])
    steps = np.abs(np.diff(values, axis=0))
    # no jump: one control period at the velocity limit (+ slack for float and period jitter)
    period = 1.0 / float(params['control_rate_hz'])
    dt = np.maximum(np.diff(times), period)[:, None]  # a skipped period may carry two steps
    assert np.all(steps <= v_max * dt * 1.5 + 1e-6), f'command jump: max step {steps.max(0)}'

    after = times > t_kill
    changing = np.any(steps > 1e-9, axis=1)
    last_change = times[1:][changing].max() if changing.any() else t_kill
    bound = watchdog_s + decel_s + 0.1 + 0.05
    assert last_change - t_kill <= bound, (
        f'commands still changing {last_change - t_kill:.3f} s after the kill (bound {bound:.3f} s)')
    assert after.sum() > 10, 'the follower stopped publishing commands after the kill'
    assert times[-1] - last_change > 1.0, 'not holding long enough to be checked'
    assert last_status is not None and last_status.state == FollowerStatus.STATE_HOLDING, \
        f'follower state {last_status.state_label if last_status else None}'
    assert last_status.watchdog_trips >= 1
