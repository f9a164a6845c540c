"""Recorded policy chunks replayed through follower_node onto the REAL ros2_control.

What it is: `ControllerRig` runs, as separate processes, the real controller manager with mock
hardware on the embedded arm (dp_bringup.mock_arm: ros2_control_node, joint_state_broadcaster,
forward_command_controller, joint_trajectory_controller) and follower_node with the embedded arm's
robot config (config/follower.yaml + config/robots/embedded_arm.yaml, at the controller manager's
500 Hz), replays the chunks of a bag (`load_chunks`: the policy's JointTrajectory topic of a
`dp_eval closed-loop --record` run), re-stamped onto the wall clock with their recorded spacing and
stamp-to-arrival latency, and records what the controllers did: /joint_states of the broadcaster
(stamps from the controller manager's clock), the follower's output, JTC's ~/controller_state and
the follower's status. `core_commands` runs the ROS-free Follower on the same chunks: what the
arm should have done. Used by the integration tests (test/test_graph_ros2_control.py) and
bench/bench_controllers.py.

What it is not: an imitation of ros2_control (every controller is the real one; without an
installation, `find_installation()` is None and nothing runs), nor a closed loop: the chunks do
not react to the arm.
"""
from __future__ import annotations

import bisect
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from dp_bringup.mock_arm import FORWARD, TRAJECTORY, MockArm, find_installation
from dp_bringup.starter import NodeSpec, ProcessGroup
from dp_common.polled import PolledCallbackGroup, take_all
from dp_common.stamps import stamp_to_sec
from dp_common.trajectories import arrays_to_joint_trajectory, joint_trajectory_to_arrays
from dp_eval import bagio

JOINTS = ['joint1', 'joint2', 'joint3']
RATE_HZ = 500.0       # follower control_rate_hz = controller manager update_rate
POLICY_TOPIC = '/policy_node/trajectory'
# Where UR's speed_scaling_state_broadcaster publishes the speed scaling (std_msgs/Float64, percent).
SPEED_SCALING_TOPIC = '/speed_scaling_state_broadcaster/speed_scaling'


def config_dir() -> Path:
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory('dp_bringup')) / 'config'


def follower_params_files() -> list[Path]:
    return [config_dir() / 'follower.yaml', config_dir() / 'robots' / 'embedded_arm.yaml']


def load_chunks(bag, topic: str = POLICY_TOPIC):
    """Chunks [(t_recv, stamp, names, tfs, positions)] of `topic` and the episode start times
    (bag time of each new /task_status episode) from a bag."""
    chunks, starts = [], []
    last_episode = None
    for raw in bagio.iter_raw(str(bag), [topic, '/task_status']):
        msg = bagio.deserialize(raw)
        t = raw.stamp_ns * 1e-9
        if raw.topic == '/task_status':
            if msg.episode != last_episode:
                last_episode = msg.episode
                starts.append(t)
            continue
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        tfs = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
                        for p in msg.points])
        pos = np.array([list(p.positions) for p in msg.points])
        chunks.append((t, stamp, list(msg.joint_names), tfs, pos))
    return chunks, starts


def _unused(msg):
    """Callback of a polled subscription (never dispatched: taken by Rig._poll)."""


class ControllerRig:
    """The processes of one run (see the module docstring), and what its node hears from them.
    Logs go to `log_dir` (ros2_control_node.log, follower_node.log)."""

    def __init__(self, log_dir: Path, output_mode: str, follower_params: Optional[dict] = None):
        inst = find_installation()
        if inst is None:
            raise RuntimeError('the real ros2_control is not installed (make ros2-control)')
        self.tmp = Path(log_dir)
        self.follower_params = dict(follower_params or {})
        self.output_mode = output_mode
        self.controller = FORWARD if output_mode == 'forward_command' else TRAJECTORY
        self.ctx = rclpy.context.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node('ros2_control_rig', context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.joint_states = []      # (recv, stamp, q (3,), v (3,))
        # What the follower sent, as heard here; `sent`: the middleware's source timestamp
        # (when follower_node published it, this host's system clock).
        self.commands = []          # forward: (recv, q, sent)
        self.trajectories = []      # joint_trajectory: (recv, stamp, tfs, pos, vel, sent)
        self.jtc_states = []        # (recv, stamp, reference q, reference v)
        self.status = None
        self.statuses = []
        self.accepted = {}          # chunk stamp (us) -> time the follower accepted it
        self.acceptances = []       # per status: (chunks accepted so far, last stamp (us), time)
        from dp_msgs.msg import FollowerStatus
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        n = self.node
        # 500 Hz topics are taken in batches by a thread of this rig (dp_common.polled), not
        # dispatched one by one by the executor (~0.5 ms of CPU each in rclpy: at 1500 messages
        # per second this process would load the 2 cores that the controller manager and the
        # follower need). Their receive times are the middleware's (MessageInfo), not the poll's.
        polled = PolledCallbackGroup()
        deep = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.polled = [
            (n.create_subscription(JointState, '/joint_states', _unused, QoSProfile(
                depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT), callback_group=polled),
             self._on_js),
            (n.create_subscription(Float64MultiArray, f'/{FORWARD}/commands', _unused, deep,
                                   callback_group=polled), self._on_cmd),
            (n.create_subscription(JointTrajectory, f'/{TRAJECTORY}/joint_trajectory', _unused, deep,
                                   callback_group=polled), self._on_traj)]
        self._polled_group, self._deep = polled, deep
        n.create_subscription(FollowerStatus, '/follower_node/status', self._on_status, latched)
        self._polling = True
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()
        self.chunk_pub = n.create_publisher(
            JointTrajectory, POLICY_TOPIC,
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self.spin = threading.Thread(target=self.executor.spin, daemon=True)
        self.spin.start()
        self.arm = MockArm(self.node, inst, active=self.controller,
                           log_path=self.tmp / 'ros2_control_node.log')
        self.group = None
        self.follower = None
        self.switcher = None
        self._scaling_timer = None
        self.published = []         # chunks as replayed: (publish time, stamp, names, tfs, pos)
        self.follower_log = self.tmp / 'follower_node.log'

    # ------------------------------------------------------------------ callbacks
    def _poll(self):
        while self._polling:
            for sub, handle in self.polled:
                for msg, info in take_all(sub, with_info=True):
                    handle(msg, info['received_timestamp'] * 1e-9, info['source_timestamp'] * 1e-9)
            time.sleep(0.01)

    def _on_js(self, msg, t_recv: float, _sent: float):
        idx = [list(msg.name).index(j) for j in JOINTS]
        with self.lock:
            self.joint_states.append((t_recv, stamp_to_sec(msg.header.stamp),
                                      np.array(msg.position)[idx], np.array(msg.velocity)[idx]))

    def _on_status(self, msg):
        with self.lock:
            self.status = msg
            self.statuses.append((time.time(), msg))
            if msg.chunks_accepted:   # when the follower accepted which chunk (by its stamp)
                key = stamp_key(stamp_to_sec(msg.last_chunk_stamp))
                self.accepted[key] = stamp_to_sec(msg.last_chunk_accepted)
                self.acceptances.append((msg.chunks_accepted, key, self.accepted[key]))

    def _on_cmd(self, msg, t_recv: float, sent: float):
        with self.lock:
            self.commands.append((t_recv, np.array(msg.data), sent))

    def _on_traj(self, msg, t_recv: float, sent: float):
        names, tfs, pos, vel = joint_trajectory_to_arrays(msg)
        with self.lock:
            self.trajectories.append((t_recv, stamp_to_sec(msg.header.stamp), tfs, pos, vel,
                                      sent))

    def _on_jtc_state(self, msg, t_recv: float, _sent: float):
        with self.lock:
            self.jtc_states.append((t_recv, stamp_to_sec(msg.header.stamp),
                                    np.array(msg.reference.positions),
                                    np.array(msg.reference.velocities)))

    def watch_jtc_state(self) -> None:
        """From now on, record joint_trajectory_controller's ~/controller_state (500 Hz) in
        `jtc_states` (not during the whole run: its deserialisation here would take CPU from
        the processes under test)."""
        from control_msgs.msg import JointTrajectoryControllerState
        sub = self.node.create_subscription(
            JointTrajectoryControllerState, f'/{TRAJECTORY}/controller_state', _unused,
            self._deep, callback_group=self._polled_group)
        self.polled = self.polled + [(sub, self._on_jtc_state)]

    # ------------------------------------------------------------------ processes
    def start(self):
        self.arm.start()
        self.arm.spawn()
        self.start_switcher()
        # As dp_launch starts it: the installed executable, parameter files then overrides,
        # output to follower_node.log.
        spec = NodeSpec('dp_controller', 'follower_node', 'follower_node',
                        params_files=[str(f) for f in follower_params_files()],
                        parameters={'output_mode': self.output_mode, 'control_rate_hz': RATE_HZ,
                                    'status_rate_hz': 20.0, **self.follower_params},
                        remappings=[('trajectory', POLICY_TOPIC)])
        self.group = ProcessGroup([spec], log_dir=str(self.tmp), quiet=True)
        self.group.start()
        self.follower = self.group.procs['follower_node']
        self.wait_for(lambda: self.status is not None and self.status.state_label == 'idle'
                      and self.status.controller_state == 'active', 'follower idle on an active '
                      'controller', 60.0)

    def stop(self):
        self._polling = False
        self.poller.join(5.0)
        rc = None
        if self.group is not None:
            rc = self.group.stop()['follower_node']
        if self.switcher is not None:
            self.switcher.stdin.close()
            self.switcher.wait(10)
        self.arm.stop()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)
        return rc

    def wait_for(self, cond, what, timeout_s=20.0):
        end = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > end:
                raise TimeoutError(f'timed out waiting for {what}; follower status: '
                                     f'{self.status and self.status.state_label}, controller '
                                     f'{self.status and self.status.controller_state}\n'
                                     f'{self.logs()}')
            if self.follower is not None and self.follower.poll() is not None:
                raise RuntimeError(f'follower_node exited ({self.follower.returncode})\n'
                                     f'{self.logs()}')
            time.sleep(0.02)

    def logs(self) -> str:
        out = []
        for p in (self.follower_log, self.tmp / 'ros2_control_node.log'):
            if p.exists():
                out.append(f'--- {p.name} (tail)\n' + p.read_text()[-3000:])
        return '\n'.join(out)

    SWITCHER = (
        'import sys, rclpy\n'
        'from controller_manager import switch_controllers\n'
        'from controller_manager_msgs.srv import SwitchController\n'
        'rclpy.init()\n'
        'node = rclpy.create_node("dp_eval_switch")\n'
        'print("ready", flush=True)\n'
        'for line in sys.stdin:\n'
        '    verb, name = line.split()\n'
        '    off, on = ([name], []) if verb == "deactivate" else ([], [name])\n'
        '    res = switch_controllers(node, "/controller_manager", off, on,\n'
        '                             SwitchController.Request.STRICT, True, 5.0)\n'
        '    print("ok" if res.ok else "failed", flush=True)\n')

    def start_switcher(self):
        """controller_manager's switch_controller service through controller_manager's own
        Python client (what `ros2 control switch_controllers --deactivate/--activate` calls), in
        a process of its own (the client spins the default context), started ahead so that a
        switch takes milliseconds, not an interpreter start."""
        self.switcher = subprocess.Popen([sys.executable, '-c', self.SWITCHER], text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if self.switcher.stdout.readline().strip() != 'ready':
            raise RuntimeError('the switch_controller client did not start')

    def switch(self, verb: str, controller: str) -> None:
        self.switcher.stdin.write(f'{verb} {controller}\n')
        self.switcher.stdin.flush()
        answer = self.switcher.stdout.readline().strip()
        if answer != 'ok':
            raise RuntimeError(f'switch_controller {verb} {controller}: {answer!r}')

    def set_speed_scaling(self, percent: float) -> None:
        """A UR-like speed scaling: joint_trajectory_controller's own (its ~/speed_scaling_input,
        control_msgs/SpeedScalingFactor, transient local as the controller subscribes) and, as
        UR's speed_scaling_state_broadcaster, std_msgs/Float64 in percent on SPEED_SCALING_TOPIC
        (100 Hz, the broadcaster's default state_publish_rate) for the follower."""
        from control_msgs.msg import SpeedScalingFactor
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._scaling_percent = float(percent)
        if self._scaling_timer is None:
            self._jtc_scaling_pub = self.node.create_publisher(
                SpeedScalingFactor, f'/{TRAJECTORY}/speed_scaling_input', latched)
            self._scaling_pub = self.node.create_publisher(
                Float64, SPEED_SCALING_TOPIC, QoSProfile(depth=10,
                                                         reliability=ReliabilityPolicy.RELIABLE))
            self._scaling_timer = self.node.create_timer(0.01, self._publish_scaling)
        self._publish_scaling()

    def _publish_scaling(self) -> None:
        # Both every 10 ms, as the UR hardware keeps setting it: one message to the controller
        # once was not always taken (a CI-like run saw no 'New scaling factor' from it).
        from control_msgs.msg import SpeedScalingFactor
        self._scaling_pub.publish(Float64(data=self._scaling_percent))
        self._jtc_scaling_pub.publish(SpeedScalingFactor(factor=self._scaling_percent / 100.0))

    # ------------------------------------------------------------------ the run
    def replay(self, chunks, on_time: Optional[Callable[[float], None]] = None):
        """Publish the chunks at their recorded spacing, stamped on the wall clock; `on_time`
        (replay seconds -> None) is called between chunks. Returns the wall start time."""
        t0_bag = chunks[0][0]
        t0 = time.time() + 0.2
        for t_recv, stamp, names, tfs, pos in chunks:
            due = t0 + (t_recv - t0_bag)
            while time.time() < due:
                if on_time is not None:
                    on_time(time.time() - t0)
                time.sleep(min(0.005, max(0.0, due - time.time())))
            msg = arrays_to_joint_trajectory(names, tfs, pos, stamp=t0 + (stamp - t0_bag))
            self.chunk_pub.publish(msg)
            # The stamp as sent (whole ns), as the follower's status will name it.
            self.published.append((time.time(), stamp_to_sec(msg.header.stamp), names, tfs,
                                   pos))
        return t0


def chunk_reference(chunks, t0, t0_bag, times):
    """The newest chunk's position at each wall time (linear in time_from_start, held at its
    ends), the chunks placed on the wall clock as replayed."""
    recv = [t0 + (c[0] - t0_bag) for c in chunks]
    out = np.full((len(times), len(JOINTS)), np.nan)
    for i, t in enumerate(times):
        k = bisect.bisect_right(recv, t) - 1
        if k < 0:
            continue
        _, stamp, names, tfs, pos = chunks[k]
        idx = [names.index(j) for j in JOINTS]
        ts = t0 + (stamp - t0_bag) + tfs
        out[i] = [np.interp(t, ts, pos[:, j]) for j in idx]
    return out


def follower_config(**overrides):
    """The FollowerConfig of the follower_node run: its parameter files, then the overrides."""
    import yaml
    from dp_controller.config import FollowerConfig
    params = {}
    for f in follower_params_files():
        params.update(yaml.safe_load(f.read_text())['follower_node']['ros__parameters'])
    params.update(control_rate_hz=RATE_HZ, **overrides)
    fields = FollowerConfig.__dataclass_fields__
    return FollowerConfig(**{k: v for k, v in params.items() if k in fields})


def joint_state_arrays(js):
    """(stamps (N,), positions (N, J)) of recorded joint states."""
    return np.array([s for _, s, _, _ in js]), np.array([q for _, _, q, _ in js])


def core_error(rig: 'ControllerRig', t_stop: float, speed_scaling: float = 1.0,
               max_lag_s: float = 0.0):
    """Per joint state (max over joints, rad): the arm vs the Follower core run on the chunks
    follower_node accepted (core_commands, each entered when the node accepted it; see
    `accepted_chunks`), at this speed scaling, from the first chunk to t_stop, one controller
    cycle later (the controller acts on a command at its next cycle).

    max_lag_s > 0: the smallest such error over the core's commands up to max_lag_s older, i.e.
    how far the arm is from where the core was a little earlier. A command that reached the
    controller late (a stall of the loaded machine: the controller manager takes topics in its
    non-real-time threads) leaves the arm on the core's path but behind it; an arm that went
    anywhere else stays far from it."""
    stamps, q = joint_state_arrays(rig.joint_states)
    i0 = int(np.argmax(stamps >= rig.published[0][0] - 0.05))
    cfg = follower_config(scaled_time_output=rig.output_mode == 'joint_trajectory')   # as the node
    ct, cq = core_commands(cfg, q[i0], stamps[i0], t_stop, rig.published, accepted_chunks(rig),
                           speed_scaling=speed_scaling, only_accepted=True)
    sel = (stamps > stamps[i0] + 0.01) & (stamps < t_stop - 0.01)
    t_js, q_js = stamps[sel] - 1.0 / RATE_HZ, q[sel]
    lags = np.arange(0.0, max_lag_s + 1e-9, cfg.period_s)
    err = np.full(len(t_js), np.inf)
    for lag in lags:
        core = np.stack([np.interp(t_js - lag, ct, cq[:, j]) for j in range(q.shape[1])], axis=1)
        err = np.minimum(err, np.max(np.abs(q_js - core), axis=1))
    return err


def accepted_chunks(rig: 'ControllerRig') -> dict:
    """The chunks follower_node accepted: stamp (us) -> time of acceptance (s).

    Its status (20 Hz) names the last chunk accepted and counts them; a chunk it never named
    was accepted unseen (between two statuses: the count rose by more than the named ones; then
    the latest such chunks published before the named one, entered 1 ms after publishing) or never
    accepted (rejected, or replaced unread in its one-deep subscription queue while its
    executor was held up: the core must not see it either)."""
    out = dict(rig.accepted)
    published = [stamp_key(c[1]) for c in rig.published]
    position = {key: i for i, key in enumerate(published)}
    when = {stamp_key(c[1]): c[0] for c in rig.published}
    count, last = 0, -1
    for n, key, _ in rig.acceptances:
        if n > count and key in position and position[key] > last:
            unseen = [k for k in published[last + 1:position[key]] if k not in out]
            for k in unseen[len(unseen) - min(len(unseen), n - count - 1):]:
                out[k] = when[k] + 0.001      # as core_commands' delivery_s
            last = position[key]
        count = max(count, n)
    return out


def chunk_error(rig: 'ControllerRig', chunks, episode_starts, t0: float, t_end: float,
                excluded=()):
    """Per joint state (max over joints, rad): the arm vs the newest chunk (chunk_reference),
    from 1 s after the replay started (t0) to t_end, away from the episode starts (from 0.2 s
    before to 1.2 s after: the chunks jump back to the home pose) and the `excluded` windows."""
    stamps, q = joint_state_arrays(rig.joint_states)
    t0_bag = chunks[0][0]
    ref = chunk_reference(chunks, t0, t0_bag, stamps)
    keep = (stamps > t0 + 1.0) & (stamps < t_end) & np.all(np.isfinite(ref), axis=1)
    windows = [(t0 + (s - t0_bag) - 0.2, t0 + (s - t0_bag) + 1.2) for s in episode_starts]
    for lo, hi in windows + list(excluded):
        keep &= ~((stamps >= lo) & (stamps <= hi))
    return np.max(np.abs(q - ref), axis=1)[keep]


def steps_per_cycle(js):
    """Largest joint step (rad) between consecutive joint states, per nominal controller cycle
    of the period that step was allowed.

    ros2_control_node runs read, update, write each cycle and passes the measured period (time
    since the previous cycle) to the controller manager, which limits each command to the URDF's
    velocity times that period (ResourceManager::enforce_command_limits). Mock hardware reads
    back the command written the cycle before, so the step between samples k-1 and k was limited
    with the period of cycle k-1 (stamps k-2 to k-1); after a late cycle that is up to twice the
    nominal step. The larger of the two intervals around a step counts (at least one cycle)."""
    stamps, q = joint_state_arrays(js)
    dt = np.diff(stamps)
    period = np.maximum(dt, np.concatenate([dt[:1], dt[:-1]]))
    cycles = np.maximum(1.0, period * RATE_HZ)
    return np.max(np.abs(np.diff(q, axis=0)), axis=1) / cycles


def stamp_key(t: float) -> int:
    """A chunk stamp (s) as an exact key: whole microseconds."""
    return int(round(t * 1e6))


def core_commands(cfg, q_start, t_start, t_stop, published, accepted=None, delivery_s=0.001,
                  speed_scaling: float = 1.0, only_accepted: bool = False):
    """The ROS-free Follower core run on the replayed chunks every control period from t_start
    to t_stop: (times, commands). Each chunk enters when follower_node accepted it (`accepted`:
    stamp in us -> time, from its FollowerStatus), else `delivery_s` after it was published (the
    ensemble's blend depends on when a chunk enters: 10 ms later moves the plan by up to
    ~0.02 rad while the policy's chunks jump); only_accepted: the others are left out."""
    accepted = accepted or {}
    if only_accepted:
        published = [c for c in published if stamp_key(c[1]) in accepted]
    published = sorted(((accepted.get(stamp_key(c[1]), c[0] + delivery_s),) + tuple(c[1:])
                        for c in published), key=lambda c: c[0])
    from dp_controller.follower import Follower
    f = Follower(cfg)
    f.start(q_start, t_start)
    f.set_speed_scaling(speed_scaling)
    times, out = [], []
    k, dt = 0, cfg.period_s
    t = t_start
    while t < t_stop:
        while k < len(published) and published[k][0] <= t:
            _, stamp, names, tfs, pos = published[k]
            f.on_chunk(stamp, names, tfs, pos, None, t)
            k += 1
        times.append(t)
        out.append(f.step(t)[0].copy())
        t += dt
    return np.array(times), np.array(out)


def step_velocities(js, min_dt=1e-4):
    """|dq/dt| between joint states at least `min_dt` apart (consecutive ones by default), by
    their header stamps."""
    stamps = np.array([s for _, s, _, _ in js])
    q = np.array([q for _, _, q, _ in js])
    if len(stamps) < 2:
        return np.zeros((1, len(JOINTS))), stamps
    later = np.searchsorted(stamps, stamps + min_dt)
    keep = later < len(stamps)
    i, j = np.nonzero(keep)[0], later[keep]
    dt = stamps[j] - stamps[i]
    return np.abs(q[j] - q[i]) / dt[:, None], stamps[j]




def jerk_stats(js, lo_s: float, hi_s: float):
    """RMS and max |jerk| (rad/s^3) of the joint states stamped in [lo_s, hi_s]: third differences
    of positions over consecutive broadcaster samples (one controller cycle apart; windows with a
    dropped sample are left out)."""
    stamps = np.array([s for _, s, _, _ in js])
    q = np.array([q for _, _, q, _ in js])
    sel = (stamps >= lo_s) & (stamps <= hi_s)
    stamps, q = stamps[sel], q[sel]
    dt = np.diff(stamps)
    if len(dt) < 4:
        return float('nan'), float('nan')
    nominal = np.median(dt)
    regular = np.all(np.stack([np.abs(dt[i:len(dt) - 2 + i] - nominal) < 0.25 * nominal
                               for i in range(3)]), axis=0)
    jerk = np.diff(q, n=3, axis=0)[regular] / nominal ** 3
    if len(jerk) == 0:
        return float('nan'), float('nan')
    return float(np.sqrt(np.mean(jerk ** 2))), float(np.max(np.abs(jerk)))
