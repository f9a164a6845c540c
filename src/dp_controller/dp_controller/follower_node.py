"""follower_node: managed (lifecycle) ROS 2 node around the ROS-free Follower core.

Thin by design: reads parameters into a FollowerConfig (node_params), converts messages to arrays
(dp_common.trajectories), calls the core, publishes. The command stream is produced by a
ControlLoop thread (absolute-time scheduling on the monotonic clock), not an executor timer,
running a CommandCycle (control_cycle: step, publish, take joint states and speed scaling,
supervise); plan evaluation uses the node clock (ROS time, or sim time with use_sim_time).
The node owns the lifecycle, the ROS interfaces, the chunk and controller-activity callbacks, the
services and ~/status (node_status); node_inputs holds the inputs' validation, jtc_output the
joint_trajectory output's rolling trajectories.

Lifecycle: configure reads parameters and builds the core and the ROS interfaces; activate starts
the control thread, which commands nothing until a joint state has been received, then holds that
position until a valid chunk arrives; deactivate stops the thread (no more commands). With the
`autostart` parameter (default true) the node configures and activates itself on start.

See README.md for the topics, QoS, parameters and services.
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time

import numpy as np
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from dp_common.node_main import run_node
from dp_common.params import declare_parameters, resolve_path
from dp_common.polled import PolledCallbackGroup
from dp_common.stamps import stamp_to_sec
from dp_common.trajectories import joint_trajectory_to_arrays
from dp_controller import node_status
from dp_controller.control_cycle import CommandCycle
from dp_controller.control_loop import ControlLoop
from dp_controller.ee_input import EE_POSE, EeRejected, EndEffectorInput, PoseOutput
from dp_controller.follower import ACCEPTED, Follower
from dp_controller.jtc_output import RollingTrajectories
from dp_controller.node_inputs import ControllerActivity, JointStateInput, SpeedScalingInput
from dp_controller.node_params import DEFAULT_CONTROLLERS, PARAMETERS, PER_JOINT, read_config

SWITCH_INTERVAL_S = 0.00005     # sys.setswitchinterval of the follower_node process
JOINT_STATE_POLL_HZ = 100.0   # the control thread takes joint states at up to this rate


class FollowerNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__('follower_node', **kwargs)
        # Per-joint limits: a number or a list of numbers (ints allowed), so dynamic typing.
        declare_parameters(self, PARAMETERS, dynamic=PER_JOINT)
        self.lifecycle_label = 'unconfigured'
        self.follower = None
        self.loop = None
        self._lock = threading.Lock()
        self._joint_states = None    # node_inputs.JointStateInput, configured
        self._js_rejected = {}       # its counters by reason: they live as long as the node
        self._scaling = None         # node_inputs.SpeedScalingInput with speed_scaling_topic
        self._scaling_sub = None
        self._last_log = {}
        self._jump_handle = None
        self._jtc = None             # the joint_trajectory output (jtc_output), configured
        self._wall_time = False      # set at activation: no sim time -> now_s reads the system clock
        self._log_throttle = float(PARAMETERS['log_throttle_s'][0])
        self._activity = ControllerActivity('')   # the output controller's state, configured
        self._cycle = None           # control_cycle.CommandCycle: the control thread's work
        self._subs, self._pubs, self._srvs, self._timers = [], [], [], []
        self._ee = None              # ee_input.EndEffectorInput: end-effector chunks, configured

    # ------------------------------------------------------------------ parameters
    def _param(self, name):
        value = self.get_parameter(name).value
        if value is None:
            value = PARAMETERS[name][0]
        return list(value) if isinstance(value, (list, tuple, np.ndarray)) else value

    def now_s(self) -> float:
        if self._wall_time:
            # The node clock without sim time is the system clock: the same value, ~40x cheaper
            # than get_clock().now() (0.2 vs 8.7 us), and this runs twice per control period.
            return time.time_ns() * 1e-9
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.cfg, self.output_mode = read_config(self._param)
            urdf = str(self._param('robot_description_file'))
            self._ee = EndEffectorInput(
                resolve_path(urdf) if urdf else None, str(self._param('tip_link')),
                self.cfg.joint_names, float(self._param('ik_position_tolerance_m')),
                float(self._param('ik_orientation_tolerance_rad')), self.cfg.lower, self.cfg.upper,
                self.cfg.vmax)
        except (ValueError, OSError) as exc:
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        # Before the subscriptions exist: their callbacks may run while configure goes on (under
        # launch_ros a chunk came in before the end of configure and found no _log_throttle).
        self._log_throttle = float(self._param('log_throttle_s'))
        self.follower = Follower(self.cfg)
        self._joint_states = JointStateInput(self.cfg.joint_names, self._log_throttled, self._lock,
                                             self._js_rejected)
        controller = str(self._param('controller_name')) or DEFAULT_CONTROLLERS[self.output_mode]
        self._create_outputs(controller)
        self._create_inputs()
        self._activity = ControllerActivity(controller)
        if controller:     # pose_stamped to MoveIt Servo: no ros2_control controller to watch
            self._watch_controller(str(self._param('controller_activity_topic')))
        self._srvs = [self.create_service(Trigger, '~/hold', self._on_hold),
                      self.create_service(Trigger, '~/resume', self._on_resume)]
        self._timers = [self.create_timer(1.0 / float(self._param('status_rate_hz')),
                                          self._publish_status)]
        self._cycle = CommandCycle(
            self.follower, self._lock, self.cfg, now_fn=self.now_s, logger=self.get_logger(),
            context_ok=self.context.ok, publisher=self._cmd_pub, jtc=self._jtc,
            activity=self._activity, joint_states=self._joint_states, joint_state_sub=self._js_sub,
            scaling=self._scaling, scaling_sub=self._scaling_sub,
            js_every=max(1, int(self.cfg.control_rate_hz // JOINT_STATE_POLL_HZ)),
            pose=self._pose_out)
        self.lifecycle_label = 'inactive'
        self.get_logger().info(
            f'configured: {self.cfg.num_joints} joints, {self.cfg.control_rate_hz:g} Hz, '
            f'{self.cfg.execution_mode}, output {self.output_mode} on {self.output_topic}')
        self._publish_status()
        return TransitionCallbackReturn.SUCCESS

    def _create_outputs(self, controller: str) -> None:
        """The command publisher (forward_command or joint_trajectory) and ~/status."""
        reliable1 = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self._jtc = None
        self._pose_out = None
        if self.output_mode == 'forward_command':
            self.output_topic = f'{controller}/commands'
            self._cmd_pub = self.create_publisher(Float64MultiArray, self.output_topic, reliable1)
        elif self.output_mode == 'pose_stamped':
            from geometry_msgs.msg import PoseStamped
            self.output_topic = str(self._param('pose_command_topic'))
            self._pose_out = PoseOutput(self._ee.space)
            # MoveIt Servo subscribes with SystemDefaultsQoS (reliable, keep last 10)
            self._cmd_pub = self.create_publisher(PoseStamped, self.output_topic, reliable1)
        else:
            self.output_topic = f'{controller}/joint_trajectory'
            self._jtc = RollingTrajectories(
                self.cfg, float(self._param('jtc_rate_hz')), float(self._param('jtc_horizon_s')),
                int(self._param('jtc_points')), str(self._param('jtc_stamp')) == 'clock')
            self._cmd_pub = self.create_publisher(JointTrajectory, self.output_topic, reliable1)
        from dp_msgs.msg import FollowerStatus
        self._status_cls = FollowerStatus
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._status_pub = self.create_publisher(FollowerStatus, '~/status', latched)
        self._pubs = [self._cmd_pub, self._status_pub]

    def _create_inputs(self) -> None:
        """Chunks (JointTrajectory, or ActionChunk where action_chunk_topic is set: then the only
        chunk input, so that no chunk is taken twice), joint states, speed scaling."""
        reliable1 = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        chunk_topic = str(self._param('action_chunk_topic'))
        if chunk_topic:
            from dp_msgs.msg import ActionChunk
            chunks = self.create_subscription(ActionChunk, chunk_topic, self._on_action_chunk,
                                              reliable1)
        else:
            chunks = self.create_subscription(JointTrajectory, str(self._param('trajectory_topic')),
                                              self._on_trajectory, reliable1)
        self._subs = [
            chunks,
            # Taken by the control thread (dp_common.polled; at most JOINT_STATE_POLL_HZ, every
            # period until the first one), not dispatched by the executor: no executor wake-up
            # and GIL hold per message. Under a driver faster than the poll, only the newest
            # `depth` (5) messages between two polls are seen (and validated).
            self.create_subscription(JointState, str(self._param('joint_states_topic')),
                                     self._joint_states.check, qos_profile_sensor_data,
                                     callback_group=PolledCallbackGroup())]
        self._js_sub = self._subs[1]
        previous, self._scaling_sub, self._scaling = self._scaling, None, None
        if self._param('speed_scaling_topic'):
            # Taken by the control thread with the joint states (UR's broadcaster publishes it
            # at its state_publish_rate, 100 Hz by default): reliable as its publisher, depth 1.
            self._scaling_sub = self.create_subscription(
                Float64, str(self._param('speed_scaling_topic')), lambda _msg: None,
                reliable1, callback_group=PolledCallbackGroup())
            self._subs.append(self._scaling_sub)
            self._scaling = SpeedScalingInput(self._scaling_sub.topic_name, self._log_throttled)
            if previous is not None:       # the counter lives as long as the node
                self._scaling.rejected = previous.rejected

    def on_activate(self, state) -> TransitionCallbackReturn:
        if self._jtc is not None:
            self._jtc.reset()
        if self._scaling is not None:
            self._scaling.reset()      # heard again after this activation before it counts
        self.follower.tracking_fault = False   # an activation is the operator's restart
        self._joint_states.reset()   # start from a joint state taken after the activation
        self._cycle.reset()
        sim = bool(self.get_parameter('use_sim_time').value)
        self._wall_time = not sim
        # Sim time: deadlines on the ROS clock, woken by every /clock update (jump callback).
        self.loop = ControlLoop(self.cfg.control_rate_hz, self._cycle.tick,
                                spin_s=float(self._param('spin_wait_s')), name='follower_control',
                                now_fn=self.now_s if sim else None,
                                # sim time: paced by /clock, no wall-clock deadline to keep
                                priority=0 if sim else int(self._param('realtime_priority')))
        if sim:
            self._jump_handle = self.get_clock().create_jump_callback(
                JumpThreshold(min_forward=Duration(nanoseconds=1),
                              min_backward=Duration(nanoseconds=-1), on_clock_change=True),
                post_callback=lambda _jump: self.loop.notify())
        self.lifecycle_label = 'active'
        self.loop.start()
        if self.loop.priority_error:
            self.get_logger().warning(f'control thread at normal priority: {self.loop.priority_error}')
        self.get_logger().info(
            f'active ({"sim" if sim else "wall"} time): waiting for a joint state, then holding '
            'until a chunk')
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_loop()
        self._wall_time = False      # use_sim_time may change before the next activation
        self.lifecycle_label = 'inactive'
        self._publish_status()
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._stop_loop()
        self._destroy_interfaces()
        self.lifecycle_label = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._stop_loop()
        self.lifecycle_label = 'finalized'
        return TransitionCallbackReturn.SUCCESS

    def _stop_loop(self):
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        if self.loop is not None:
            self.loop.stop()
        if self.follower is not None:
            with self._lock:
                self.follower.stop()

    def _destroy_interfaces(self):
        for t in self._timers:
            self.destroy_timer(t)
        for s in self._subs:
            self.destroy_subscription(s)
        for p in self._pubs:
            self.destroy_publisher(p)
        for s in self._srvs:
            self.destroy_service(s)
        self._subs, self._pubs, self._srvs, self._timers = [], [], [], []
        self.follower = None

    # ------------------------------------------------------------------ callbacks
    def _on_trajectory(self, msg: JointTrajectory, n_action_steps=None):
        now = self.now_s()
        if self.follower is None:
            return
        try:
            names, t, pos, vel = joint_trajectory_to_arrays(msg)
        except ValueError:
            with self._lock:
                self.follower.count_rejection('bad_shape')
            self._log_reject('bad_shape')
            return
        stamp = stamp_to_sec(msg.header.stamp)
        with self._lock:
            result = self.follower.on_chunk(stamp, names, t, pos, vel, now,
                                            n_action_steps=n_action_steps)
        if result != ACCEPTED:
            self._log_reject(result, f'stamp {stamp:.3f} now {now:.3f}')

    def _on_action_chunk(self, msg):
        if msg.action_space in ('', 'joint'):
            self._on_trajectory(msg.trajectory, n_action_steps=msg.n_action_steps or None)
            return
        follower, ee = self.follower, self._ee
        if follower is None or ee is None:
            return
        if msg.action_space != EE_POSE:
            self._reject(follower, 'unknown_action_space',
                         f'{msg.action_space!r} (joint or ee_pose)')
            return
        stamp = stamp_to_sec(msg.header.stamp)
        with self._lock:   # what would refuse any chunk now: before the inverse kinematics
            reason = follower.precheck(stamp, self.now_s())
            q_start = follower.command[0].copy() if not reason else None
        if reason:
            self._reject(follower, reason, f'stamp {stamp:.3f}')
            return
        try:
            t, pos = ee.joint_chunk(msg, np.asarray(q_start, dtype=np.float64))
        except EeRejected as rej:
            self._reject(follower, rej.reason, rej.detail)
            return
        now = self.now_s()          # after the inverse kinematics (milliseconds)
        with self._lock:
            result = follower.on_chunk(stamp, self.cfg.joint_names, t, pos, None, now,
                                       n_action_steps=msg.n_action_steps or None)
        if result != ACCEPTED:
            self._log_reject(result, f'stamp {stamp:.3f} now {now:.3f}')

    def _reject(self, follower, reason: str, detail: str = '') -> None:
        with self._lock:
            follower.count_rejection(reason)
        self._log_reject(reason, detail)

    def _log_reject(self, reason: str, detail: str = ''):
        count = self.follower.rejected[reason] if self.follower else 0
        self._log_throttled(reason, f'chunk rejected: {reason} ({count} so far) {detail}')

    def _watch_controller(self, topic: str) -> None:
        if not topic:
            return
        try:
            from controller_manager_msgs.msg import ControllerManagerActivity
        except ImportError:
            self.get_logger().info(
                "controller_manager_msgs not installed: the output controller's state is not "
                'watched (commands are always sent)')
            return
        # The controller manager publishes it latched on every change of a controller's state;
        # depth 10: a quick inactive -> active pair must not reach us as one 'active'.
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._subs.append(self.create_subscription(
            ControllerManagerActivity, topic, self._on_controller_activity, latched))

    def _on_controller_activity(self, msg) -> None:
        activity = self._activity
        with self._lock:
            previous = activity.update(msg)
            state = activity.state
            if state == previous or self.follower is None:
                return
            if state != 'active' and self.follower.started:
                # Nothing executes our commands now: stop planning ahead of an arm that stands
                # still, so that nothing jumps when the controller comes back.
                self.follower.stop()
                activity.deactivations += 1
        if state == 'active':
            if previous != 'unknown':
                self.get_logger().info(f'{activity.name} is active again: commanding from '
                                       'the measured position')
        else:
            self.get_logger().warning(f'{activity.name} is {state}: not commanding until it '
                                      'is active again')

    def _log_throttled(self, key: str, text: str, interval_s: float = 0.0):
        t = time.monotonic()
        if t - self._last_log.get(key, -math.inf) >= max(interval_s, self._log_throttle):
            self._last_log[key] = t
            self.get_logger().warning(text)

    def _on_hold(self, request, response):
        if self.follower is None or self.lifecycle_label != 'active':
            response.success, response.message = False, 'not active'
            return response
        with self._lock:
            self.follower.hold('hold_service')
        response.success, response.message = True, 'holding'
        return response

    def _on_resume(self, request, response):
        if self.follower is None:
            response.success, response.message = False, 'not configured'
            return response
        with self._lock:
            self.follower.resume()
        response.success, response.message = True, 'following the next valid chunk'
        return response

    # ------------------------------------------------------------------ status
    def _publish_status(self):
        if self.follower is None:
            return
        msg = self._status_cls()
        msg.header.stamp = self.get_clock().now().to_msg()
        with self._lock:
            snap = node_status.snapshot(self.follower, self._joint_states, self._scaling,
                                        self.now_s())
        if self.loop is not None and self.loop.exception is not None:
            self.get_logger().error(f'control thread died: {self.loop.exception!r}')
        node_status.fill(msg, snap, self.loop)
        msg.lifecycle_state = self.lifecycle_label
        msg.output_mode = self.output_mode
        msg.output_topic = self.output_topic
        msg.controller_state = self._activity.state
        msg.controller_deactivations = self._activity.deactivations
        msg.joint_names = list(self.cfg.joint_names)
        self._status_pub.publish(msg)


def set_executor_thread_priority(node: FollowerNode) -> None:
    """With realtime_priority p > 1: SCHED_FIFO p - 1 for the calling thread, the one that spins
    the node's executor (main does this). That thread holds the interpreter lock (GIL) while it
    runs a callback; at normal priority a busy core preempts it for a scheduler slice while it
    holds the lock, and the control thread waits for it at its deadline (p99 period error
    0.7-1.2 ms with a busy core; 0.01 ms at p - 1)."""
    prio = int(node.get_parameter('realtime_priority').value)
    if prio <= 1 or node.get_parameter('use_sim_time').value:
        return      # sim time: no wall-clock deadlines, and /clock may come at 1 kHz
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio - 1))
    except (OSError, AttributeError) as exc:
        node.get_logger().warning(
            f'executor thread at normal priority: SCHED_FIFO {prio - 1} not permitted ({exc})')


def main(args=None):
    # A short GIL switch interval: the control thread gets the interpreter back within ~50 us from
    # a callback running in the executor thread (0.2 ms: p99 period error 0.16 ms; 0.05 ms: 0.01 ms).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return run_node(FollowerNode, args, after_create=_after_create,
                    cleanup=FollowerNode._stop_loop)


def _after_create(node: 'FollowerNode') -> None:
    set_executor_thread_priority(node)   # run_node spins the executor in this thread
    _autostart(node)


def _autostart(node: 'FollowerNode') -> None:
    if node.get_parameter('autostart').value:
        node.trigger_configure()
        if node.lifecycle_label == 'inactive':
            node.trigger_activate()


if __name__ == '__main__':
    main()
