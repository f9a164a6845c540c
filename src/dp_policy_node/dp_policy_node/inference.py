"""InferenceWorker: policy_node's inference thread (the executor only receives and the worker
only infers and publishes), and Robot, what the node keeps for one robot namespace.

trigger 'timer': ticks every 1/policy_rate_hz on the node's ROS clock (simulated time under
use_sim_time: woken by every /clock update; a clock going backwards restarts the ticks); each tick
infers on the newest complete observation of every robot.
trigger 'observation': runs as soon as a robot's newest complete observation is due (a grid of
1/policy_rate_hz in observation time, RobotSchedule.is_due; the node's input callbacks call
`maybe_wake`), and every 0.5 s to refresh skip reasons.

A tick: the policy resets asked for (ResetHistory, a clock jump: `request_reset`) first; nothing
while output is disabled or the clock has not started; else select_batch picks the ready robots,
one DiffusionPolicy.predict runs for the batch, and each robot gets its chunk (messages.py) unless
its history was reset during inference or an action is not finite. No rclpy import: the node
hands over its clock readings, logger and publishers.
"""
from __future__ import annotations

import collections
import math
import threading
from typing import Any, Callable, Optional

import numpy as np

from dp_common.joints import JointIndexer

from .messages import chunk_messages
from .observation import Observation, ObservationHistory
from .scheduling import RobotSchedule, TimerTicks, Trigger, select_batch
from .status import StatusBook, StreamStats

NO_CLOCK = 'waiting for the clock (use_sim_time and no /clock yet)'


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


class ChunkTiming:
    """Real-time chunking's expected delay from a chunk's observation stamp to its arrival at
    the follower, and the artificial inference delay (evaluation of slow inference).

    Expected delay: `inference_delay_s` where set (> 0), else measured: the 90th percentile of
    the last `window` chunks' age at publication (node clock minus observation stamp: waiting,
    inference and the added delay), plus `margin_s` for the transport; before any chunk, the
    added delay plus the margin."""

    def __init__(self, rtc: bool, inference_delay_s: float = 0.0, added_delay_s: float = 0.0,
                 margin_s: float = 0.01, window: int = 20) -> None:
        self.rtc, self.fixed_s, self.added_s = bool(rtc), float(inference_delay_s), float(added_delay_s)
        self.margin_s = float(margin_s)
        self._ages: collections.deque = collections.deque(maxlen=window)

    def expected_delay_s(self) -> float:
        if self.fixed_s > 0:
            return self.fixed_s
        if not self._ages:
            return self.added_s + self.margin_s
        return float(np.percentile(np.asarray(self._ages), 90)) + self.margin_s

    def published(self, age_s: float) -> None:
        if math.isfinite(age_s) and age_s >= 0:
            self._ages.append(age_s)


class InferenceWorker:
    def __init__(self, policy: Any, robots: dict[str, Robot], trigger: Trigger, *,
                 cameras: list[str], joint_names: list[str], publish_velocities: bool,
                 book: StatusBook, now_ns: Callable[[], int], clock_ns: Callable[[], int],
                 sim_time_active: Callable[[], bool], enabled: Callable[[], bool],
                 reject: Callable[[Robot, str, str, str], None], logger: Any,
                 context_ok: Callable[[], bool], timing: Optional[ChunkTiming] = None,
                 ee: Any = None, masks: Optional[dict] = None) -> None:
        """now_ns: the node's clock with clock-jump detection (the ticks); clock_ns: its plain
        reading (chunk ages); reject(robot, stream, code, detail): the node's count and log of a
        rejected input; joint_names: the output's joints; timing: real-time chunking and the
        artificial delay (None: neither); ee: the robot's EndEffectorSpace for an end-effector
        checkpoint (joint states -> tip poses in, poses out), None for a joint-space one;
        masks: {camera: RobotMask} painting the robot out of those cameras' images, each frame
        with the joint state of its observation step (checkpoints trained so)."""
        self.timing = timing or ChunkTiming(False)
        self.policy, self.robots, self.trigger = policy, robots, trigger
        self.cameras, self.joint_names, self.ee = cameras, joint_names, ee
        self.masks = dict(masks or {})
        self.publish_velocities = publish_velocities
        self.book, self.now_ns, self.clock_ns = book, now_ns, clock_ns
        self.sim_time_active, self.enabled, self.reject = sim_time_active, enabled, reject
        self.logger, self.context_ok = logger, context_ok
        self.reason = ''            # why the last tick produced no chunk, node-wide ('' if none)
        self.last_backend = policy.backend_for(len(robots))
        self.active = False
        self._resets: set[str] = set()    # robots whose policy state the next tick resets
        self._obstacles: Optional[list] = None   # a new obstacle set for the next tick
        self.obstacles_hold = ''  # why no chunk may go out with the obstacles known ('' = may)
        self._obstacles_hold_next = ''
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self._stop.clear()
        self._wake.set()
        self.active = True
        self._thread = threading.Thread(target=self._loop, name='policy_inference', daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits for a chunk in flight)."""
        self.active = False
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def request_reset(self, ns: str) -> None:
        """The robot's policy state (e.g. warm-started noise) is reset before the next tick."""
        with self._lock:
            self._resets.add(ns)

    def set_obstacles(self, obstacles: list, hold: str = '') -> None:
        """Guidance's obstacles from the next tick on (set between two predictions, so that the
        guidance and the safety gate of a chunk see one set); `hold`: a reason to publish no
        chunk with this set (an incomplete one), '' = none."""
        with self._lock:
            self._obstacles = list(obstacles)
            self._obstacles_hold_next = hold

    def maybe_wake(self, robot: Robot) -> None:
        """An observation came in: with the observation trigger, wake the thread if it is due."""
        if not self.active or not self.trigger.on_observation:
            return
        t0 = robot.history.newest_common_ns()
        if robot.schedule.is_new(t0) and robot.schedule.is_due(t0):
            self._wake.set()

    # ------------------------------------------------------------------ thread
    def _loop(self) -> None:
        ticks = TimerTicks(self.trigger.period_ns)
        while not self._stop.is_set():
            if self.trigger.on_observation:
                self._wait(0.5)
                if not self._stop.is_set():
                    self._run_tick()
                continue
            now = self.now_ns()
            if now <= 0:
                self.reason = NO_CLOCK
                ticks.reset()
                self._wait(0.1)
                continue
            wait_s = ticks.wait_s(now)
            if wait_s > 0:   # simulated time: woken by /clock, re-checked at least every 0.1 s
                self._wait(min(wait_s, 0.1) if self.sim_time_active() else wait_s)
                continue
            self._run_tick()
            missed = ticks.ticked(self.now_ns())
            if missed:                           # inference longer than a period
                self.book.skipped('overrun', missed)

    def _wait(self, timeout_s: float) -> None:
        self._wake.wait(timeout=max(0.0, timeout_s))
        self._wake.clear()

    def _run_tick(self) -> None:
        try:
            self._tick()
        except Exception as err:  # noqa: BLE001 - the thread must survive anything
            if not self.context_ok():
                return      # shutting down (SIGINT): the publishers went with the context
            self.book.skipped('inference_error')
            self.reason = f'inference_error: {type(err).__name__}: {err}'[:500]
            self.logger.error(f'inference failed: {type(err).__name__}: {err}',
                              throttle_duration_sec=5.0)

    def _tick(self) -> None:
        now = self.now_ns()
        with self._lock:
            resets, self._resets = self._resets, set()
            obstacles, self._obstacles = self._obstacles, None
            if obstacles is not None:
                self.obstacles_hold = self._obstacles_hold_next
        for ns in resets:
            self.policy.reset(ns)
        if obstacles is not None:
            self.policy.set_obstacles(obstacles)
        if not self.enabled():
            self.reason = 'disabled'
            return
        if now <= 0:
            self.reason = NO_CLOCK
            return
        if self.obstacles_hold:
            self.reason = self.obstacles_hold
            self.logger.warning(f'no chunk: {self.obstacles_hold} (obstacles_required)',
                                throttle_duration_sec=5.0)
            return
        self.reason = ''
        by_ns = dict(self.robots)
        ready, skipped = select_batch([(ns, r.schedule, r.history) for ns, r in by_ns.items()],
                                      now, self.trigger.grid_ns)
        for ns, skip in skipped:
            if skip.rejected:
                self.reject(by_ns[ns], skip.stream, skip.counter, skip.detail)
            else:
                self.book.skipped(skip.counter)
        ready = [(by_ns[ns], obs, epoch) for ns, obs, epoch in ready]
        if ready:
            self._infer(ready)

    def _infer(self, ready: list) -> None:
        """One predict for the batch of (robot, observation, schedule epoch); a chunk each."""
        state = np.stack([o.state for _, o, _ in ready])                           # (B, n_obs, J)
        images = {cam: np.stack([o.images[cam] if cam not in self.masks else
                                 self.masks[cam].paint_frames(o.images[cam], o.state)
                                 for _, o, _ in ready]) for cam in self.cameras}
        if self.ee is not None:
            state = self.ee.vectors(state)                                   # (B, n_obs, 9) poses
        stamps = np.array([o.stamp_ns for _, o, _ in ready], dtype=np.float64) * 1e-9
        timing = self.timing
        delays = [timing.expected_delay_s()] * len(ready) if timing.rtc else None
        out = self.policy.predict(state, images, stamps=stamps,
                                  robot_ids=[r.ns for r, _, _ in ready], rtc_delay_s=delays,
                                  commit=False)
        if timing.added_s > 0 and not self._wait_on_clock(timing.added_s):
            return                       # stopping: the chunk of a slow inference is dropped
        self.last_backend = out.backend
        for b, (robot, obs, epoch) in enumerate(ready):
            if robot.schedule.epoch != epoch:
                self.book.skipped('reset_during_inference')
                continue
            if not np.all(np.isfinite(out.actions[b])):                              # (T, A)
                self.book.skipped('nonfinite_action')
                robot.schedule.last_skip = 'nonfinite_action'
                continue
            if out.gated is not None and out.gated[b]:
                # Every sample breaks a hard limit even after guidance: the follower keeps its
                # plan (and its own limits) rather than getting this chunk.
                self.book.skipped('gated')
                robot.schedule.last_skip = 'gated'
                self.logger.warning(f'{robot.ns or "robot"}: chunk gated: none of '
                                    f'{out.samples.shape[1]} sample(s) passes the gate (limits, '
                                    'obstacle margin on the chunk, the switch into it or the '
                                    'ensemble with the running chunks)',
                                    throttle_duration_sec=5.0)
                continue
            if out.assessment is not None:
                k = out.chosen[b]
                self.book.chosen_safety(*(float(out.assessment[n][b, k]) for n in (
                    'limit_margin_rad', 'clearance_m', 'cost')))
            if self.enabled() and self.active:
                self._publish_chunk(robot, obs, out, b)

    def _wait_on_clock(self, seconds: float) -> bool:
        """Wait `seconds` on the node's clock (simulated time under use_sim_time: the delay is
        the robot's, however fast the simulation runs); False when the worker stops first."""
        deadline = self.clock_ns() + int(seconds * 1e9)
        while self.clock_ns() < deadline:
            if self._stop.wait(0.002):
                return False
        return True

    def _publish_chunk(self, robot: Robot, obs: Observation, out: Any, b: int) -> None:
        robot.sequence += 1
        age = (self.clock_ns() - obs.stamp_ns) * 1e-9
        traj, chunk = chunk_messages(self.joint_names, self.policy.meta, out, b, obs.stamp_ns,
                                     self.publish_velocities, robot.ns, robot.sequence, age,
                                     ee=self.ee)
        if traj is not None:
            robot.traj_pub.publish(traj)
        robot.chunk_pub.publish(chunk)
        self.policy.commit(robot.ns, obs.stamp_ns * 1e-9, out.actions[b])
        robot.schedule.chunk_published(obs.stamp_ns)
        self.book.chunk_published(out.latency_s, age)
        self.timing.published(age)
