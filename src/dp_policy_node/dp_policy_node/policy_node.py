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
import time
from typing import Any, Optional

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

from dp_common.joints import JointIndexer
from dp_common.node_main import run_node
from dp_common.params import declare_parameters
from dp_common.stamps import stamp_to_ns
from dp_msgs.msg import ActionChunk, PolicyStatus
from dp_msgs.srv import ResetHistory, SetEnabled
from sensor_msgs.msg import CompressedImage, Image, JointState
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from .messages import decode_image, fill_status, precheck_image
from .node_config import (PARAMETERS, ConfigError, PolicyNodeConfig, end_effector_space,
                          guidance_for, output_topic, robot_masks, robot_topic)
from .observation import JOINT_STREAM, ClockJumpDetector, ObservationHistory
from .inference import ChunkTiming, InferenceWorker, Robot
from .obstacles import TopicObstacles
from .scheduling import RobotSchedule, Trigger
from .status import StatusBook, StreamStats

OUTPUT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class PolicyNode(LifecycleNode):
    """Managed node running a DiffusionPolicy checkpoint on live (or replayed) observations."""

    def __init__(self, node_name: str = 'policy_node', **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare_parameters(self, PARAMETERS)
        self.book = StatusBook()                  # counters and windows of ~/status
        self._node_reason = 'not configured'     # lifecycle-level reason for no chunk ('' if none)
        self._enabled = True
        self.worker: Optional[InferenceWorker] = None   # the inference thread, configured
        self.cfg: Optional[PolicyNodeConfig] = None
        self.policy = None
        self.robots: dict[str, Robot] = {}
        self._clock_jumps = ClockJumpDetector()
        self._cb_inputs = MutuallyExclusiveCallbackGroup()
        self._obstacles: Optional[TopicObstacles] = None     # guidance's obstacles_topic input
        self._obstacle_sub = None
        self._jump_handle = None
        self._ee = None              # the robot's EndEffectorSpace (end-effector checkpoints)
        self._cameras, self._transports = [], []   # the checkpoint's cameras, their transports
        self.trigger: Optional[Trigger] = None

        self._status_pub = self.create_publisher(PolicyStatus, self._param('status_topic'),
                                                 STATUS_QOS)
        # wall-clock status timer: it keeps reporting while a simulated clock is paused
        period_s = 1.0 / max(float(self._param('status_rate_hz')), 1e-3)
        self._status_timer = self.create_timer(period_s, self._publish_status,
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
        worker = self.worker
        if worker is not None and worker.reason:
            return worker.reason
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
        from dp_policy.policy import DiffusionPolicy      # torch is imported here, not at start

        cfg = PolicyNodeConfig.from_params(self._param)
        if not cfg.checkpoint:
            raise ConfigError("parameter 'checkpoint' is empty: give the path of a checkpoint file")
        t_start = time.monotonic()
        policy = DiffusionPolicy.from_checkpoint(
            cfg.checkpoint, backend=cfg.backend, device=cfg.device,
            num_inference_steps=cfg.num_inference_steps or None, num_samples=cfg.num_samples,
            num_threads=cfg.num_threads or None)
        meta = policy.meta
        joints, topics = cfg.check_against_checkpoint(list(meta.joint_names), list(meta.camera_names),
                                                      meta.action_space)
        ee = None
        if meta.action_space is not None:
            if cfg.guidance:
                raise ConfigError('guidance works on joint-space checkpoints; this one acts in '
                                  f'{meta.space_kind} space (set guidance: false)')
            ee = end_effector_space(cfg, joints, meta.action_space)
        self._ee = ee
        masks = robot_masks(cfg, joints, meta) if meta.robot_mask else {}
        policy.execution = cfg.execution
        if cfg.guidance:
            policy.set_guidance(*guidance_for(cfg, joints, meta.dt_s))
            self._obstacles = TopicObstacles(policy.guidance, self.book, self.get_logger(),
                                             required=cfg.obstacles_required)
        if meta.camera_names and meta.image_hw is None:
            raise ConfigError('checkpoint has cameras but no image size')
        choice = policy.warmup(batch_sizes=sorted({1, len(cfg.robot_namespaces)})) \
            if cfg.warmup else {}
        self.cfg = cfg
        self.policy = policy
        self._cameras = list(meta.camera_names)
        self._transports = cfg.transports(topics)
        self._clock_jumps = ClockJumpDetector(cfg.clock_jump_threshold_s)
        self.trigger = Trigger(cfg.trigger, cfg.policy_rate_hz)
        for ns in cfg.robot_namespaces:
            self._add_robot(ns, joints, topics, meta)
        self.worker = InferenceWorker(
            policy, self.robots, self.trigger, cameras=self._cameras, joint_names=joints, ee=ee,
            masks=masks,
            publish_velocities=cfg.publish_velocities, book=self.book, now_ns=self._now_ns,
            clock_ns=lambda: self.get_clock().now().nanoseconds,
            sim_time_active=lambda: self.get_clock().ros_time_is_active,
            enabled=lambda: self._enabled, reject=self._reject, logger=self.get_logger(),
            context_ok=self.context.ok, timing=ChunkTiming(
                cfg.execution == 'rtc', cfg.inference_delay_s, cfg.added_delay_s))
        if self._obstacles is not None and cfg.obstacles_topic:
            self._obstacles.worker = self.worker
            if cfg.obstacles_required:
                self.worker.obstacles_hold = TopicObstacles.WAITING
                self.get_logger().info(
                    f'obstacles_required: no chunk before the first message on '
                    f'{cfg.obstacles_topic} (publish it latched: transient local)')
            self._obstacle_sub = self.create_subscription(
                MarkerArray, cfg.obstacles_topic, self._obstacles.on_message, STATUS_QOS,
                callback_group=self._cb_inputs)
        self._node_reason = ''
        self.get_logger().info(
            f'configured in {time.monotonic() - t_start:.1f} s: {cfg.checkpoint} '
            f'(joints {joints}{f", end-effector poses of {ee.tip_link} in {ee.root_frame}" if ee else ""}, cameras {list(zip(meta.camera_names, topics, self._transports))}, '
            f'image {meta.image_hw}, n_obs {meta.n_obs_steps}, horizon {meta.horizon}, dt '
            f'{meta.dt_s} s), backend {choice or cfg.backend} on {cfg.device}, '
            f'robots {cfg.robot_namespaces}, trigger {cfg.trigger}'
            f'{f"; robot painted out of cameras {sorted(masks)}" if masks else ""}')

    def _add_robot(self, ns: str, joints: list[str], topics: list[str], meta: Any) -> None:
        cfg = self.cfg
        history = ObservationHistory(
            len(joints), self._cameras, meta.n_obs_steps, meta.dt_s, cfg.max_observation_age_s,
            tolerance_s=cfg.alignment_tolerance_s or None, max_future_s=cfg.max_future_stamp_s,
            image_hw=meta.image_hw, image_capacity=cfg.max_images_per_camera)
        robot = Robot(ns, history, JointIndexer(joints), RobotSchedule(self.trigger.grid_ns))
        self.robots[ns] = robot
        self._subscribe(robot, JOINT_STREAM, JointState, cfg.joint_states_topic,
                        lambda msg, r=robot: self._on_joint_state(r, msg))
        for cam, topic, transport in zip(self._cameras, topics, self._transports):
            self._subscribe(robot, cam, CompressedImage if transport == 'compressed' else Image,
                            topic, lambda msg, r=robot, c=cam, t=transport: self._on_image(
                                r, c, t, msg))
        name = self.get_name()
        if self._ee is None:   # an end-effector chunk has no joint trajectory: ActionChunk only
            robot.traj_pub = self.create_publisher(
                JointTrajectory, output_topic(ns, cfg.trajectory_topic, name), OUTPUT_QOS)
        robot.chunk_pub = self.create_publisher(
            ActionChunk, output_topic(ns, cfg.action_chunk_topic, name), OUTPUT_QOS)

    def _subscribe(self, robot: Robot, stream: str, msg_type: Any, topic: str, callback) -> None:
        """An input stream of the robot (sensor-data QoS), with its statistics and label."""
        sub = self.create_subscription(msg_type, robot_topic(robot.ns, topic), callback,
                                       qos_profile_sensor_data, callback_group=self._cb_inputs)
        robot.subscriptions.append(sub)
        robot.stats[stream] = StreamStats(sub.topic_name)
        robot.history.labels[stream] = sub.topic_name

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        worker = self.worker
        # Under use_sim_time every /clock message moves the ROS clock: wake the loop on each so
        # that timer ticks follow simulated (or replayed) time, whatever its rate.
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=None,
                          on_clock_change=True),
            post_callback=lambda _jump: worker.wake())
        worker.start()
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

    on_error = on_shutdown     # stop the thread, drop the policy and the interfaces

    def stop_worker(self) -> None:
        """Stop the inference thread (waits for a chunk in flight)."""
        worker = self.worker
        if worker is not None:
            worker.stop()
        if self._jump_handle is not None:
            try:
                self._jump_handle.unregister()
            except Exception:  # noqa: BLE001 - clock already gone at shutdown
                pass
            self._jump_handle = None

    def _teardown(self) -> None:
        if self._obstacle_sub is not None:
            self.destroy_subscription(self._obstacle_sub)
        self._obstacle_sub, self._obstacles = None, None
        for robot in self.robots.values():
            for sub in robot.subscriptions:
                self.destroy_subscription(sub)
            for pub in (robot.traj_pub, robot.chunk_pub):
                if pub is not None:
                    self.destroy_publisher(pub)
        self.robots, self.policy, self.cfg, self.worker = {}, None, None, None
        self._ee = None

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
        worker = self.worker
        if worker is not None:
            worker.request_reset(robot.ns)

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
        self._inserted(robot, JOINT_STREAM, stamp, robot.history.insert_joint_state(stamp, q, now))

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
        self._inserted(robot, cam, stamp, robot.history.insert_image(
            cam, stamp, lambda m=msg: decode_image(m, transport, hw, resize), now))

    def _inserted(self, robot: Robot, stream: str, stamp: int, reason: str) -> None:
        """After an insert into the history: refused (`reason`: counted, logged) or accepted
        (the stream's statistics; with the observation trigger the worker may be due)."""
        if reason:
            self._reject(robot, stream, reason)
            return
        robot.stats[stream].accepted(stamp)
        worker = self.worker
        if worker is not None:
            worker.maybe_wake(robot)

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
        worker = self.worker
        if worker is not None:
            msg.backend = worker.last_backend
        fill_status(msg, self.book, list(self.robots.values()),
                    self.get_clock().now().nanoseconds)
        msg.last_skip_reason = self.last_skip_reason
        try:
            self._status_pub.publish(msg)
        except Exception:  # noqa: BLE001 - context shutting down
            pass


def main(args: Optional[list[str]] = None) -> int:
    return run_node(PolicyNode, args, cleanup=PolicyNode.stop_worker)


if __name__ == '__main__':
    sys.exit(main())
