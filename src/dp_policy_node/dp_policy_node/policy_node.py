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

The node is thin: parameters -> PolicyNodeConfig (node_config.py), images in and chunks out
(messages.py), alignment (observation.py), when to infer and for which robots (scheduling.py),
counters of the status (status.py), inference (dp_policy.policy). It only wires and publishes.
"""
from __future__ import annotations

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

from dp_common.joints import JointIndexer
from dp_common.node_main import run_node
from dp_common.stamps import stamp_to_ns
from dp_msgs.msg import ActionChunk, Counter, InputStatus, PolicyStatus
from dp_msgs.srv import ResetHistory, SetEnabled
from sensor_msgs.msg import CompressedImage, Image, JointState
from trajectory_msgs.msg import JointTrajectory

from .messages import chunk_messages, decode_image, precheck_image
from .node_config import PARAMETERS, ConfigError, PolicyNodeConfig, output_topic, robot_topic
from .observation import JOINT_STREAM, ClockJumpDetector, Observation, ObservationHistory
from .scheduling import RobotSchedule, TimerTicks, Trigger, select_batch
from .status import StatusBook, StreamStats

OUTPUT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Robot:
    """Everything the node keeps for one robot namespace: its observation history, its place in
    the schedule (scheduling.RobotSchedule), input statistics, subscriptions and publishers."""

    def __init__(self, ns: str, history: ObservationHistory, indexer: JointIndexer,
                 schedule: RobotSchedule) -> None:
        self.ns = ns
        self.history = history
        self.indexer = indexer
        self.schedule = schedule
        self.stats: dict[str, StreamStats] = {}
        self.subscriptions: list = []
        self.traj_pub = None
        self.chunk_pub = None
        self.sequence = 0


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
        self._lock = threading.Lock()             # the policy resets the worker takes
        self.book = StatusBook()                  # counters and windows of ~/status
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
        self.trigger: Optional[Trigger] = None
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
        reasons = [(f'{r.ns}: ' if r.ns else '') + r.schedule.last_skip
                   for r in list(self.robots.values()) if r.schedule.last_skip]
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
        self.trigger = Trigger(cfg.trigger, cfg.policy_rate_hz)
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
        robot = Robot(ns, history, JointIndexer(joints), RobotSchedule(self.trigger.grid_ns))
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
        self.book.skipped('clock_jump')

    def _reset_robot(self, robot: Robot) -> None:
        robot.schedule.reset()
        robot.history.clear()
        with self._lock:
            self._policy_resets.add(robot.ns)

    def _reject(self, robot: Robot, stream: str, code: str, detail: str = '') -> None:
        self.book.rejected(code)
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
        stats.accepted(stamp)
        self._maybe_wake(robot)

    def _on_image(self, robot: Robot, cam: str, transport: str, msg: Any) -> None:
        policy, cfg = self.policy, self.cfg
        if policy is None or cfg is None:          # a callback racing on_cleanup
            return
        stats = robot.stats[cam]
        stats.received += 1
        now = self._now_ns()
        code = precheck_image(msg, transport, policy.meta.image_hw, cfg.resize_images)
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
        stats.accepted(stamp)
        self._maybe_wake(robot)

    def _maybe_wake(self, robot: Robot) -> None:
        trigger = self.trigger
        if not self._active or trigger is None or not trigger.on_observation:
            return
        t0 = robot.history.newest_common_ns()
        if robot.schedule.is_new(t0) and robot.schedule.is_due(t0):
            self._wake.set()

    # ------------------------------------------------------------------ inference
    def _worker_loop(self) -> None:
        """The policy's own loop, on the inference thread (the executor only receives).

        trigger 'timer': ticks every 1/policy_rate_hz on the node's ROS clock (simulated time
        under use_sim_time: woken by every /clock update; a clock going backwards restarts the
        ticks); each tick infers on the newest complete observation of every robot.
        trigger 'observation': runs as soon as a robot's newest complete observation is due (a grid
        of 1/policy_rate_hz in observation time, RobotSchedule.is_due), and every 0.5 s to refresh skip
        reasons.
        """
        trigger = self.trigger
        ticks = TimerTicks(trigger.period_ns)
        while not self._stop.is_set():
            if trigger.on_observation:
                self._wait(0.5)
                if not self._stop.is_set():
                    self._run_tick()
                continue
            now = self._now_ns()
            if now <= 0:
                self._node_reason = 'waiting for the clock (use_sim_time and no /clock yet)'
                ticks.reset()
                self._wait(0.1)
                continue
            wait_s = ticks.wait_s(now)
            if wait_s > 0:   # simulated time: woken by /clock, re-checked at least every 0.1 s
                self._wait(min(wait_s, 0.1) if self.get_clock().ros_time_is_active else wait_s)
                continue
            self._run_tick()
            missed = ticks.ticked(self._now_ns())
            if missed:                           # inference longer than a period
                self.book.skipped('overrun', missed)

    def _wait(self, timeout_s: float) -> None:
        self._wake.wait(timeout=max(0.0, timeout_s))
        self._wake.clear()

    def _run_tick(self) -> None:
        try:
            self._tick()
        except Exception as err:  # noqa: BLE001 - the thread must survive anything
            if not self.context.ok():
                return      # shutting down (SIGINT): the publishers went with the context
            self.book.skipped('inference_error')
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
        by_ns = dict(self.robots)
        ready, skipped = select_batch([(ns, r.schedule, r.history) for ns, r in by_ns.items()],
                                      now, self.trigger.grid_ns)
        for ns, skip in skipped:
            if skip.rejected:
                self._reject(by_ns[ns], skip.stream, skip.counter, skip.detail)
            else:
                self.book.skipped(skip.counter)
        ready = [(by_ns[ns], obs, epoch) for ns, obs, epoch in ready]
        if not ready:
            return
        state = np.stack([o.state for _, o, _ in ready])                           # (B, n_obs, S)
        images = {cam: np.stack([o.images[cam] for _, o, _ in ready]) for cam in self._cameras}
        stamps = np.array([o.stamp_ns for _, o, _ in ready], dtype=np.float64) * 1e-9
        out = policy.predict(state, images, stamps=stamps, robot_ids=[r.ns for r, _, _ in ready])
        self._last_backend = out.backend
        for b, (robot, obs, epoch) in enumerate(ready):
            if robot.schedule.epoch != epoch:
                self.book.skipped('reset_during_inference')
                continue
            actions = out.actions[b]                                                 # (T, A)
            if not np.all(np.isfinite(actions)):
                self.book.skipped('nonfinite_action')
                robot.schedule.last_skip = 'nonfinite_action'
                continue
            if not self._enabled or not self._active:
                continue
            self._publish_chunk(robot, obs, out, b)

    def _publish_chunk(self, robot: Robot, obs: Observation, out: Any, b: int) -> None:
        robot.sequence += 1
        age = (self.get_clock().now().nanoseconds - obs.stamp_ns) * 1e-9
        traj, chunk = chunk_messages(self._out_joint_names, self.policy.meta, out, b, obs.stamp_ns,
                                     self.cfg.publish_velocities, robot.ns, robot.sequence, age)
        robot.traj_pub.publish(traj)
        robot.chunk_pub.publish(chunk)
        robot.schedule.chunk_published(obs.stamp_ns)
        self.book.chunk_published(out.latency_s, age)

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
        snap, elapsed = self.book.snapshot()
        now_ns = self.get_clock().now().nanoseconds
        for robot in list(self.robots.values()):
            held = robot.history.sizes()
            for stream, stats in robot.stats.items():
                stats.mark(elapsed)
                age = float('nan') if stats.newest_ns is None else (now_ns - stats.newest_ns) * 1e-9
                msg.inputs.append(InputStatus(topic=stats.topic, received=stats.received,
                                              rate_hz=float(stats.rate_hz), age_s=age,
                                              buffered=int(held.get(stream, 0))))
        msg.chunks_published = snap.chunks_published
        msg.output_rate_hz = snap.output_rate_hz
        msg.rejected = [Counter(name=k, count=v) for k, v in sorted(snap.rejected.items())]
        msg.skipped = [Counter(name=k, count=v) for k, v in sorted(snap.skipped.items())]
        msg.latency_p50_s, msg.latency_p99_s = snap.latency_p50_s, snap.latency_p99_s
        msg.latency_max_s = snap.latency_max_s
        msg.observation_to_publish_p50_s = snap.observation_to_publish_p50_s
        msg.last_skip_reason = self.last_skip_reason
        try:
            self._status_pub.publish(msg)
        except Exception:  # noqa: BLE001 - context shutting down
            pass


def main(args: Optional[list[str]] = None) -> int:
    return run_node(PolicyNode, args, cleanup=PolicyNode.stop_worker)


if __name__ == '__main__':
    sys.exit(main())
