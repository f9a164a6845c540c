"""policy_node: the ROS 2 face of the Diffusion Policy (a managed / lifecycle node).

What it does, per robot namespace `ns` it serves (parameter robot_namespaces, default ['']):

    <ns>/joint_states, <ns>/<camera topics>   (sensor-data QoS)
        -> ObservationHistory (observation.py: bounded, aligned on header stamps)
        -> one batch of every ready robot -> DiffusionPolicy.predict (inference thread)
        -> <ns>/<node>/trajectory    trajectory_msgs/JointTrajectory  (reliable, depth 1)
           <ns>/<node>/action_chunk  dp_msgs/ActionChunk              (reliable, depth 1)
    ~/status  dp_msgs/PolicyStatus (transient local, depth 1, status_rate_hz)
    ~/reset_history  dp_msgs/srv/ResetHistory,  ~/set_enabled  dp_msgs/srv/SetEnabled

(for ns == '' the outputs are ~/trajectory and ~/action_chunk.)

Lifecycle: on_configure reads the parameters, loads and warms up the checkpoint and subscribes
(a missing or incompatible checkpoint fails the transition with the reason in the log and in
PolicyStatus.last_skip_reason; the node stays unconfigured); on_activate starts the inference
thread; on_deactivate stops it; on_cleanup drops the policy and the subscriptions. With
`autostart` (default) the node configures and activates itself.

Time: the published trajectory's header.stamp is the newest observation's stamp and point j is
meant for stamp + j*dt (point 0 is the action for the observation time itself). The node honours
use_sim_time; a clock jumping backwards clears every history (no mixing of episodes).

The node is thin: parameters -> PolicyNodeConfig (node_config.py), messages -> arrays
(dp_common), alignment (observation.py), inference (policy.py). It only wires and publishes.
"""
from __future__ import annotations

import collections
import sys
import threading
import time
from typing import Any, Optional

import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from rcl_interfaces.msg import ParameterDescriptor

from dp_common.images import (ImageFormatError, UnsupportedEncodingError, encoding_info,
                              resize_rgb8, to_rgb8)
from dp_common.joints import JointIndexer
from dp_common.node_main import run_node
from dp_common.stamps import ns_to_stamp, stamp_to_ns
from dp_common.trajectories import arrays_to_joint_trajectory
from dp_msgs.msg import ActionChunk, Counter, InputStatus, PolicyStatus
from dp_msgs.srv import ResetHistory, SetEnabled
from sensor_msgs.msg import CompressedImage, Image, JointState
from trajectory_msgs.msg import JointTrajectory

from .node_config import PARAMETERS, ConfigError, PolicyNodeConfig, output_topic, robot_topic
from .observation import (JOINT_STREAM, ClockJumpDetector, ImageRejected, Observation,
                          ObservationHistory, Skip)

OUTPUT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.TRANSIENT_LOCAL)
NS = 1_000_000_000


def decode_image(msg: Any, transport: str, image_hw: tuple[int, int], resize: bool) -> np.ndarray:
    """Image / CompressedImage -> (H, W, 3) uint8 RGB of the checkpoint's size.

    Raises ImageRejected with a counter name ('unsupported_encoding', 'bad_image_format',
    'image_conversion_error', 'wrong_image_size')."""
    try:   # the decoder training uses (dp_common.images.to_rgb8): the same pixels
        arr = to_rgb8(msg, transport == 'compressed', image_hw if resize else None)
    except UnsupportedEncodingError as err:
        raise ImageRejected('unsupported_encoding', str(err)) from err
    except ImageFormatError as err:
        raise ImageRejected('bad_image_format', str(err)) from err
    except Exception as err:  # noqa: BLE001 - a message the decoder chokes on
        raise ImageRejected('image_conversion_error', f'{type(err).__name__}: {err}') from err
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or arr.size == 0:
        raise ImageRejected('bad_image_format', f'decoded to {arr.dtype} {arr.shape}')
    if tuple(arr.shape[:2]) != tuple(image_hw):
        if not resize:
            raise ImageRejected('wrong_image_size',
                                f'{arr.shape[1]}x{arr.shape[0]} instead of {image_hw[1]}x{image_hw[0]}')
        arr = resize_rgb8(arr, image_hw)
    return arr


class StreamStats:
    """Receive counter, rate and newest accepted stamp of one input topic."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.received = 0
        self.newest_ns: Optional[int] = None
        self._count_at_mark = 0
        self.rate_hz = 0.0

    def mark(self, elapsed_s: float) -> None:
        if elapsed_s > 0:
            self.rate_hz = (self.received - self._count_at_mark) / elapsed_s
        self._count_at_mark = self.received


class Robot:
    """Everything the node keeps for one robot namespace."""

    def __init__(self, ns: str, history: ObservationHistory, indexer: JointIndexer) -> None:
        self.ns = ns
        self.history = history
        self.indexer = indexer
        self.stats: dict[str, StreamStats] = {}
        self.subscriptions: list = []
        self.traj_pub = None
        self.chunk_pub = None
        self.last_t0_ns: Optional[int] = None   # stamp of the last chunk's newest observation
        self.tried_t0_ns: Optional[int] = None  # newest observation stamp last tried (chunk or not)
        self.due_ns: Optional[int] = None       # trigger observation: stamp the next chunk is due at
        self.sequence = 0
        self.epoch = 0                          # bumped by reset / clock jump: drops chunks in flight
        self.last_skip = 'no observation yet'

    def is_new(self, t0_ns: Optional[int]) -> bool:
        """An observation stamped t0_ns exists and is newer than the last one tried."""
        return t0_ns is not None and (self.tried_t0_ns is None or t0_ns > self.tried_t0_ns)

    def is_due(self, t0_ns: int, period_ns: int, early_ns: Optional[int] = None) -> bool:
        """Trigger 'observation' (period_ns > 0): may the observation stamped t0_ns start a chunk?
        Chunks follow a grid of one period in observation time, each due from `early_ns` (default
        a quarter period) before its grid point, and never closer than half a period: so a camera
        whose frames do not divide the period (15 Hz for a 10 Hz policy) still gives
        policy_rate_hz on average (chunks 133 / 67 ms apart), where 'at least 0.75 period apart'
        alone would give 7.5 Hz. period_ns 0 (trigger 'timer', the tick sets the rate): any new
        observation."""
        if period_ns <= 0 or self.due_ns is None or self.last_t0_ns is None:
            return True
        early = period_ns // 4 if early_ns is None else early_ns
        return t0_ns >= self.due_ns - early and t0_ns >= self.last_t0_ns + period_ns // 2

    def chunk_published(self, t0_ns: int, period_ns: int) -> None:
        self.last_t0_ns = t0_ns
        if period_ns > 0:
            nxt = t0_ns + period_ns if self.due_ns is None else self.due_ns + period_ns
            if nxt - period_ns // 4 <= t0_ns:   # a whole period behind (frames missing, load):
                nxt = t0_ns + period_ns          # the grid starts again from this observation
            self.due_ns = nxt


def robots_starting(candidates: list[tuple[Robot, int]], period_ns: int) -> list[Robot]:
    """Trigger 'observation': of the robots with a new, fresh observation (robot, its stamp), the
    ones that start a chunk now. None unless at least one is due (Robot.is_due); then also every
    robot due within half a period, so that robots whose cameras are out of phase still share one
    batch (one forward pass per period instead of one per robot; each keeps its own grid, so its
    rate stays policy_rate_hz). period_ns 0 (trigger 'timer'): all of them."""
    if period_ns <= 0:
        return [r for r, _ in candidates]
    if not any(r.is_due(t0, period_ns) for r, t0 in candidates):
        return []
    return [r for r, t0 in candidates if r.is_due(t0, period_ns, period_ns // 2)]


class PolicyNode(LifecycleNode):
    """Managed node running a DiffusionPolicy checkpoint on live (or replayed) observations."""

    def __init__(self, node_name: str = 'policy_node', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for name, (default, description) in PARAMETERS.items():
            desc = ParameterDescriptor(description=description)
            if isinstance(default, list) and not default:
                self.declare_parameter(name, Parameter.Type.STRING_ARRAY, desc)
            else:
                self.declare_parameter(name, default, desc)
        self._lock = threading.Lock()             # counters, stats, latency windows
        self._rejected: collections.Counter = collections.Counter()
        self._skipped: collections.Counter = collections.Counter()
        self._latency = collections.deque(maxlen=200)
        self._obs_to_pub = collections.deque(maxlen=200)
        self._chunks_published = 0
        self._chunks_at_mark = 0
        self._output_rate_hz = 0.0
        self._mark_time = time.monotonic()
        self._node_reason = 'not configured'     # node-level reason for no chunk ('' if none)
        self._policy_resets: set[str] = set()     # robots whose policy state the worker resets
        self._last_backend = ''
        self._enabled = True
        self.cfg: Optional[PolicyNodeConfig] = None
        self.policy = None
        self.robots: dict[str, Robot] = {}
        self._clock_jumps = ClockJumpDetector()
        self._cb_inputs = MutuallyExclusiveCallbackGroup()
        self._worker: Optional[threading.Thread] = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._active = False
        self._jump_handle = None
        self._cameras: list[str] = []
        self._transports: list[str] = []
        self._out_joint_names: list[str] = []
        self._due_period_ns = 0                 # trigger observation: the chunk grid (Robot.is_due)
        self._warmup_choice: dict = {}

        status_topic = self.get_parameter('status_topic').value
        status_rate = float(self.get_parameter('status_rate_hz').value)
        self._status_pub = self.create_publisher(PolicyStatus, status_topic, STATUS_QOS)
        # wall-clock status timer: it keeps reporting while a simulated clock is paused
        self._status_timer = self.create_timer(1.0 / max(status_rate, 1e-3), self._publish_status,
                                               clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_service(ResetHistory, '~/reset_history', self._on_reset_history)
        self.create_service(SetEnabled, '~/set_enabled', self._on_set_enabled)
        if self.get_parameter('autostart').value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()
        self._publish_status()

    # ------------------------------------------------------------------ parameters
    def _param(self, name: str) -> Any:
        try:
            return self.get_parameter(name).value
        except rclpy.exceptions.ParameterUninitializedException:
            return None

    @property
    def last_skip_reason(self) -> str:
        """Why the last tick produced no chunk: a node-level reason, else the robots' ('' = none)."""
        if self._node_reason:
            return self._node_reason
        reasons = [(f'{r.ns}: ' if r.ns else '') + r.last_skip
                   for r in list(self.robots.values()) if r.last_skip]
        return '; '.join(reasons)

    @property
    def lifecycle_state(self) -> str:
        return self._state_machine.current_state[1]

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as err:  # noqa: BLE001 - any reason: report, stay unconfigured
            self._teardown()
            msg = f'configure failed: {err}'
            self._node_reason = msg[:500]
            self.get_logger().error(msg)
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        from dp_policy.checkpoint import CheckpointError  # noqa: F401 - torch import here, not at start
        from dp_policy.policy import DiffusionPolicy

        cfg = PolicyNodeConfig.from_params(self._param)
        if not cfg.checkpoint:
            raise ConfigError("parameter 'checkpoint' is empty: give the path of a checkpoint file")
        t_start = time.monotonic()
        policy = DiffusionPolicy.from_checkpoint(
            cfg.checkpoint, backend=cfg.backend, device=cfg.device,
            num_inference_steps=cfg.num_inference_steps or None, num_samples=cfg.num_samples,
            num_threads=cfg.num_threads or None)
        meta = policy.meta
        joints, topics = cfg.check_against_checkpoint(list(meta.joint_names), list(meta.camera_names))
        if meta.camera_names and meta.image_hw is None:
            raise ConfigError('checkpoint has cameras but no image size')
        if cfg.warmup:
            self._warmup_choice = policy.warmup(batch_sizes=sorted({1, len(cfg.robot_namespaces)}))
        self.cfg = cfg
        self.policy = policy
        self._cameras = list(meta.camera_names)
        self._transports = cfg.transports(topics)
        self._out_joint_names = joints
        self._clock_jumps = ClockJumpDetector(cfg.clock_jump_threshold_s)
        period_ns = int(NS / cfg.policy_rate_hz)
        self._due_period_ns = period_ns if cfg.trigger == 'observation' else 0
        for ns in cfg.robot_namespaces:
            self._add_robot(ns, joints, topics, meta)
        self._node_reason = ''
        self._last_backend = policy.backend_for(len(cfg.robot_namespaces))
        self.get_logger().info(
            f'configured in {time.monotonic() - t_start:.1f} s: {cfg.checkpoint} '
            f'(joints {joints}, cameras {list(zip(meta.camera_names, topics, self._transports))}, '
            f'image {meta.image_hw}, n_obs {meta.n_obs_steps}, horizon {meta.horizon}, dt '
            f'{meta.dt_s} s), backend {self._warmup_choice or cfg.backend} on {cfg.device}, '
            f'robots {cfg.robot_namespaces}, trigger {cfg.trigger}')

    def _add_robot(self, ns: str, joints: list[str], topics: list[str], meta: Any) -> None:
        cfg = self.cfg
        history = ObservationHistory(
            len(joints), self._cameras, meta.n_obs_steps, meta.dt_s, cfg.max_observation_age_s,
            tolerance_s=cfg.alignment_tolerance_s or None, max_future_s=cfg.max_future_stamp_s,
            image_hw=meta.image_hw, image_capacity=cfg.max_images_per_camera)
        robot = Robot(ns, history, JointIndexer(joints))
        self.robots[ns] = robot
        sub = self.create_subscription(
            JointState, robot_topic(ns, cfg.joint_states_topic),
            lambda msg, r=robot: self._on_joint_state(r, msg), qos_profile_sensor_data,
            callback_group=self._cb_inputs)
        robot.subscriptions.append(sub)
        robot.stats[JOINT_STREAM] = StreamStats(sub.topic_name)
        history.labels[JOINT_STREAM] = sub.topic_name
        for cam, topic, transport in zip(self._cameras, topics, self._transports):
            msg_type = CompressedImage if transport == 'compressed' else Image
            sub = self.create_subscription(
                msg_type, robot_topic(ns, topic),
                lambda msg, r=robot, c=cam, t=transport: self._on_image(r, c, t, msg),
                qos_profile_sensor_data, callback_group=self._cb_inputs)
            robot.subscriptions.append(sub)
            robot.stats[cam] = StreamStats(sub.topic_name)
            history.labels[cam] = sub.topic_name
        name = self.get_name()
        robot.traj_pub = self.create_publisher(
            JointTrajectory, output_topic(ns, cfg.trajectory_topic, name), OUTPUT_QOS)
        robot.chunk_pub = self.create_publisher(
            ActionChunk, output_topic(ns, cfg.action_chunk_topic, name), OUTPUT_QOS)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop.clear()
        self._wake.set()
        self._active = True
        # Under use_sim_time every /clock message moves the ROS clock: wake the loop on each so
        # that timer ticks follow simulated (or replayed) time, whatever its rate.
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=None,
                          on_clock_change=True),
            post_callback=lambda _jump: self._wake.set())
        self._worker = threading.Thread(target=self._worker_loop, name='policy_inference',
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(f'active: inference running (trigger {self.cfg.trigger} at '
                               f'{self.cfg.policy_rate_hz} Hz)')
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_worker()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_worker()
        self._teardown()
        self._node_reason = 'not configured'
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_worker()
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_worker()
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def stop_worker(self) -> None:
        """Stop the inference thread (waits for a chunk in flight)."""
        self._active = False
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None
        if self._jump_handle is not None:
            try:
                self._jump_handle.unregister()
            except Exception:  # noqa: BLE001 - clock already gone at shutdown
                pass
            self._jump_handle = None

    def _teardown(self) -> None:
        for robot in self.robots.values():
            for sub in robot.subscriptions:
                self.destroy_subscription(sub)
            for pub in (robot.traj_pub, robot.chunk_pub):
                if pub is not None:
                    self.destroy_publisher(pub)
        self.robots = {}
        self.policy = None
        self.cfg = None

    # ------------------------------------------------------------------ inputs
    def _now_ns(self) -> int:
        now = self.get_clock().now().nanoseconds
        if self._clock_jumps.update(now):
            self._on_clock_jump(now)
        return now

    def _on_clock_jump(self, now_ns: int) -> None:
        self.get_logger().warning(
            f'clock jumped backwards (now {now_ns * 1e-9:.3f} s): clearing every observation history')
        for robot in list(self.robots.values()):
            self._reset_robot(robot)
        self._count(self._skipped, 'clock_jump')

    def _reset_robot(self, robot: Robot) -> None:
        robot.epoch += 1
        robot.history.clear()
        robot.last_t0_ns = robot.tried_t0_ns = robot.due_ns = None
        robot.last_skip = 'history reset'
        with self._lock:
            self._policy_resets.add(robot.ns)

    def _count(self, counter: collections.Counter, key: str, n: int = 1) -> None:
        with self._lock:
            counter[key] += n

    def _reject(self, robot: Robot, stream: str, code: str, detail: str = '') -> None:
        key = code.split(':', 1)[0]
        self._count(self._rejected, key)
        stats = robot.stats.get(stream)
        topic = stats.topic if stats is not None else stream
        self.get_logger().warning(
            f'rejected {topic}: {code}{" (" + detail + ")" if detail else ""}',
            throttle_duration_sec=5.0)

    def _on_joint_state(self, robot: Robot, msg: JointState) -> None:
        stats = robot.stats[JOINT_STREAM]
        stats.received += 1
        now = self._now_ns()
        q, reason = robot.indexer.positions(msg.name, msg.position)
        if q is None:
            self._reject(robot, JOINT_STREAM, reason)
            return
        stamp = stamp_to_ns(msg.header.stamp)
        reason = robot.history.insert_joint_state(stamp, q, now)
        if reason:
            self._reject(robot, JOINT_STREAM, reason)
            return
        stats.newest_ns = stamp if stats.newest_ns is None else max(stats.newest_ns, stamp)
        self._maybe_wake(robot)

    def _on_image(self, robot: Robot, cam: str, transport: str, msg: Any) -> None:
        policy, cfg = self.policy, self.cfg
        if policy is None or cfg is None:          # a callback racing on_cleanup
            return
        stats = robot.stats[cam]
        stats.received += 1
        now = self._now_ns()
        code = self._precheck_image(msg, transport, policy.meta.image_hw, cfg.resize_images)
        if code:
            self._reject(robot, cam, code, getattr(msg, 'encoding', getattr(msg, 'format', '')))
            return
        stamp = stamp_to_ns(msg.header.stamp)
        hw, resize = policy.meta.image_hw, cfg.resize_images
        reason = robot.history.insert_image(
            cam, stamp, lambda m=msg: decode_image(m, transport, hw, resize), now)
        if reason:
            self._reject(robot, cam, reason)
            return
        stats.newest_ns = stamp if stats.newest_ns is None else max(stats.newest_ns, stamp)
        self._maybe_wake(robot)

    @staticmethod
    def _precheck_image(msg: Any, transport: str, image_hw: tuple[int, int], resize: bool) -> str:
        """Cheap checks on arrival (decoding waits until the image is used)."""
        if len(msg.data) == 0:
            return 'empty_image'
        if transport == 'compressed':
            return ''
        if msg.height == 0 or msg.width == 0:
            return 'empty_image'
        try:
            encoding_info(msg.encoding)
        except UnsupportedEncodingError:
            return 'unsupported_encoding'
        if not resize and (msg.height, msg.width) != tuple(image_hw):
            return 'wrong_image_size'
        return ''

    def _maybe_wake(self, robot: Robot) -> None:
        cfg = self.cfg
        if not self._active or cfg is None or cfg.trigger != 'observation':
            return
        t0 = robot.history.newest_common_ns()
        if robot.is_new(t0) and robot.is_due(t0, self._due_period_ns):
            self._wake.set()

    # ------------------------------------------------------------------ inference
    def _worker_loop(self) -> None:
        """The policy's own loop, on the inference thread (the executor only receives).

        trigger 'timer': ticks every 1/policy_rate_hz on the node's ROS clock (simulated time
        under use_sim_time: woken by every /clock update; a clock going backwards restarts the
        ticks); each tick infers on the newest complete observation of every robot.
        trigger 'observation': runs as soon as a robot's newest complete observation is due (a grid
        of 1/policy_rate_hz in observation time, Robot.is_due), and every 0.5 s to refresh skip
        reasons.
        """
        cfg = self.cfg
        period_ns = int(NS / cfg.policy_rate_hz)
        next_tick: Optional[int] = None
        while not self._stop.is_set():
            if cfg.trigger == 'timer':
                now = self._now_ns()
                if now <= 0:
                    self._node_reason = 'waiting for the clock (use_sim_time and no /clock yet)'
                    next_tick = None
                    self._wait(0.1)
                    continue
                if next_tick is None or now < next_tick - 2 * period_ns:
                    next_tick = now                 # first tick, or the clock went backwards
                if now < next_tick:
                    sim = self.get_clock().ros_time_is_active
                    remaining = (next_tick - now) * 1e-9
                    self._wait(min(remaining, 0.1) if sim else remaining)
                    continue
                self._run_tick()
                next_tick += period_ns
                now = self._now_ns()
                if next_tick <= now:                 # inference longer than a period: skip ticks
                    missed = (now - next_tick) // period_ns + 1
                    self._count(self._skipped, 'overrun', int(missed))
                    next_tick += missed * period_ns
            else:
                self._wait(0.5)
                if self._stop.is_set():
                    break
                self._run_tick()

    def _wait(self, timeout_s: float) -> None:
        self._wake.wait(timeout=max(0.0, timeout_s))
        self._wake.clear()

    def _run_tick(self) -> None:
        try:
            self._tick()
        except Exception as err:  # noqa: BLE001 - the thread must survive anything
            if not self.context.ok():
                return      # shutting down (SIGINT): the publishers went with the context
            self._count(self._skipped, 'inference_error')
            self._node_reason = f'inference_error: {type(err).__name__}: {err}'[:500]
            self.get_logger().error(f'inference failed: {type(err).__name__}: {err}',
                                    throttle_duration_sec=5.0)

    def _tick(self) -> None:
        policy, cfg = self.policy, self.cfg
        if policy is None or cfg is None:
            return
        now = self._now_ns()
        with self._lock:
            resets, self._policy_resets = self._policy_resets, set()
        for ns in resets:
            policy.reset(ns)
        if not self._enabled:
            self._node_reason = 'disabled'
            return
        if now <= 0:
            self._node_reason = 'waiting for the clock (use_sim_time and no /clock yet)'
            return
        self._node_reason = ''
        robots = []                               # (robot, epoch, newest stamp, within max age)
        for robot in list(self.robots.values()):
            t0 = robot.history.newest_common_ns()
            if t0 is not None and robot.tried_t0_ns is not None and t0 < robot.tried_t0_ns:
                robot.last_t0_ns = robot.tried_t0_ns = robot.due_ns = None  # history restarted
            fresh = t0 is not None and now - t0 <= robot.history.max_age_ns
            robots.append((robot, robot.epoch, t0, fresh))
        starting = {id(r) for r in robots_starting(
            [(r, t0) for r, _, t0, fresh in robots if fresh and r.is_new(t0)], self._due_period_ns)}
        ready: list[tuple[Robot, Observation, int]] = []
        for robot, epoch, t0, fresh in robots:
            if fresh and id(robot) not in starting:
                # fresh, but nothing new since the last attempt (its reason stands), or not due
                # yet (trigger observation): wait
                continue
            robot.tried_t0_ns = t0
            res = robot.history.sample(now)
            if isinstance(res, Skip):
                robot.last_skip = res.reason
                if res.rejected:
                    self._reject(robot, res.stream, res.counter, res.detail)
                else:
                    self._count(self._skipped, res.counter)
                continue
            ready.append((robot, res, epoch))
        if not ready:
            return
        state = np.stack([o.state for _, o, _ in ready])                           # (B, n_obs, S)
        images = {cam: np.stack([o.images[cam] for _, o, _ in ready]) for cam in self._cameras}
        stamps = np.array([o.stamp_ns for _, o, _ in ready], dtype=np.float64) * 1e-9
        out = policy.predict(state, images, stamps=stamps, robot_ids=[r.ns for r, _, _ in ready])
        self._last_backend = out.backend
        for b, (robot, obs, epoch) in enumerate(ready):
            if robot.epoch != epoch:
                self._count(self._skipped, 'reset_during_inference')
                continue
            actions = out.actions[b]                                                 # (T, A)
            if not np.all(np.isfinite(actions)):
                self._count(self._skipped, 'nonfinite_action')
                robot.last_skip = 'nonfinite_action'
                continue
            if not self._enabled or not self._active:
                continue
            self._publish_chunk(robot, obs, out, b)

    def _publish_chunk(self, robot: Robot, obs: Observation, out: Any, b: int) -> None:
        meta, cfg = self.policy.meta, self.cfg
        dt = float(meta.dt_s)
        fai = int(out.first_action_index)
        actions = np.asarray(out.actions[b], dtype=np.float64)                      # (T, A)
        stamp = ns_to_stamp(obs.stamp_ns)
        names = self._out_joint_names

        def velocities(pos: np.ndarray) -> Optional[np.ndarray]:
            if not cfg.publish_velocities or pos.shape[0] < 2:
                return None
            return np.gradient(pos, dt, axis=0)

        future = actions[fai:]                                                       # (T - fai, A)
        traj = arrays_to_joint_trajectory(names, np.arange(future.shape[0]) * dt, future,
                                          velocities(future), stamp=stamp)
        chunk = ActionChunk()
        chunk.header = traj.header
        robot.sequence += 1
        chunk.sequence = robot.sequence
        chunk.robot_namespace = robot.ns
        chunk.trajectory = arrays_to_joint_trajectory(
            names, (np.arange(actions.shape[0]) - fai) * dt, actions, velocities(actions), stamp=stamp)
        chunk.dt_s = dt
        chunk.first_action_index = fai
        chunk.n_action_steps = int(meta.n_action_steps)
        chunk.inference_latency_s = float(out.latency_s)
        chunk.scheduler = str(out.scheduler)
        chunk.num_inference_steps = int(out.num_inference_steps)
        chunk.num_samples = int(out.samples.shape[1])
        chunk.chosen_sample = int(out.chosen[b])
        now = self.get_clock().now().nanoseconds
        age = (now - obs.stamp_ns) * 1e-9
        chunk.observation_age_s = age
        robot.traj_pub.publish(traj)
        robot.chunk_pub.publish(chunk)
        robot.chunk_published(obs.stamp_ns, self._due_period_ns)
        robot.last_skip = ''
        with self._lock:
            self._chunks_published += 1
            self._latency.append(float(out.latency_s))
            self._obs_to_pub.append(age)

    # ------------------------------------------------------------------ services
    def _on_reset_history(self, req: ResetHistory.Request, resp: ResetHistory.Response):
        ns = req.robot_namespace.strip('/')
        if not self.robots:
            resp.success, resp.message = False, f'not configured (state {self.lifecycle_state})'
            return resp
        if ns and ns not in self.robots:
            resp.success = False
            resp.message = f'unknown robot namespace {ns!r}; serving {list(self.robots)}'
            return resp
        targets = [self.robots[ns]] if ns else list(self.robots.values())
        for robot in targets:
            self._reset_robot(robot)
        resp.success = True
        resp.message = f'history cleared for {[r.ns for r in targets]}'
        self.get_logger().info(resp.message)
        return resp

    def _on_set_enabled(self, req: SetEnabled.Request, resp: SetEnabled.Response):
        self._enabled = bool(req.enabled)
        resp.success = True
        resp.message = 'output enabled' if self._enabled else 'output disabled'
        self.get_logger().info(resp.message)
        return resp

    # ------------------------------------------------------------------ status
    def _publish_status(self) -> None:
        msg = PolicyStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.lifecycle_state = self.lifecycle_state
        msg.enabled = self._enabled
        cfg = self.cfg
        if cfg is not None:
            msg.checkpoint = cfg.checkpoint
            msg.device = cfg.device
        if self.policy is not None:
            msg.backend = self._last_backend
        now_ns = self.get_clock().now().nanoseconds
        t = time.monotonic()
        elapsed = t - self._mark_time
        self._mark_time = t
        for robot in list(self.robots.values()):
            held = robot.history.sizes()
            for stream, stats in robot.stats.items():
                stats.mark(elapsed)
                age = float('nan') if stats.newest_ns is None else (now_ns - stats.newest_ns) * 1e-9
                msg.inputs.append(InputStatus(topic=stats.topic, received=stats.received,
                                              rate_hz=float(stats.rate_hz), age_s=age,
                                              buffered=int(held.get(stream, 0))))
        with self._lock:
            if elapsed > 0:
                self._output_rate_hz = (self._chunks_published - self._chunks_at_mark) / elapsed
            self._chunks_at_mark = self._chunks_published
            msg.chunks_published = self._chunks_published
            msg.output_rate_hz = float(self._output_rate_hz)
            lat = np.array(self._latency) if self._latency else None
            o2p = np.array(self._obs_to_pub) if self._obs_to_pub else None
            msg.rejected = [Counter(name=k, count=v) for k, v in sorted(self._rejected.items())]
            msg.skipped = [Counter(name=k, count=v) for k, v in sorted(self._skipped.items())]
        if lat is not None:
            msg.latency_p50_s, msg.latency_p99_s = (float(v) for v in np.percentile(lat, [50, 99]))
            msg.latency_max_s = float(lat.max())
        if o2p is not None:
            msg.observation_to_publish_p50_s = float(np.percentile(o2p, 50))
        msg.last_skip_reason = self.last_skip_reason
        try:
            self._status_pub.publish(msg)
        except Exception:  # noqa: BLE001 - context shutting down
            pass


def main(args: Optional[list[str]] = None) -> int:
    return run_node(PolicyNode, args, cleanup=PolicyNode.stop_worker)


if __name__ == '__main__':
    sys.exit(main())
