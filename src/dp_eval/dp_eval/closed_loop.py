"""Closed-loop evaluation: N episodes of the embedded simulation through the real node graph.

What it does: starts sim_node, policy_node and follower_node as separate processes with
dp_bringup's process starter (GRAPHS['sim.launch.py'], the same executables and parameter files as
launch/sim.launch.py), or attaches to a graph that is already running (`start_graph=False`); waits
until the simulation's reset service answers, the policy node is active, the follower reports and
the policy has published a first chunk (so the first episode does not pay its start-up); then per
episode:

    policy_node/reset_history -> sim_node/reset_episode(seed) -> policy_node/reset_history
    -> wait for /task_status of that episode with done (or the wall-clock episode timeout)

and collects, through episodes.EpisodeTracker: success, time to success (simulated s), obstacle
contact, side of the obstacle, distance, the follower's commands (command jerk), the policy's
ActionChunk inference latencies and the follower's own jerk estimate. Optionally records the run
as a rosbag2 (raw CDR, log time = simulated /clock time as `ros2 bag record --use-sim-time` does).

Two checkpoints (or more): run_closed_loop_series runs the same episodes (same seeds, so the
same targets) for each, in one simulation and follower; only policy_node is restarted with the
next checkpoint. Each gets its own result and bag.

Robustness: every wait has a timeout and checks that the started processes are alive; a process
that dies, a policy whose configuration fails (its PolicyStatus says why) or a missing service
ends the run with an error naming it and the tail of that node's log; Ctrl-C / SIGTERM end the run
with the episodes finished so far (partial). All started processes are stopped in every case.

Thin: ROS plumbing only. The bookkeeping is episodes.py (ROS-free); reports are report.py.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from dp_eval.episodes import EpisodeTracker, summarize_episodes
from dp_eval.graph import RawRecorder, log_tail, subscribe_raw

__all__ = ['ClosedLoopConfig', 'ClosedLoopError', 'Variant', 'run_closed_loop',
           'run_closed_loop_series', 'DEFAULT_RECORD_TOPICS']

DEFAULT_RECORD_TOPICS = (
    '/joint_states', '/camera/image_raw', '/camera/camera_info', '/task_status',
    '/forward_position_controller/commands', '/joint_trajectory_controller/joint_trajectory',
    '/policy_node/trajectory', '/policy_node/action_chunk', '/policy_node/status',
    '/follower_node/status',
)


class ClosedLoopError(RuntimeError):
    """The graph could not be started or stopped answering; the message says which part."""


@dataclass
class ClosedLoopConfig:
    episodes: int = 10
    seed: int = 0                         # episode i uses seed + i (reproducible targets)
    episode_timeout_s: float = 40.0       # wall seconds per episode before giving up on it
    startup_timeout_s: float = 180.0      # wall seconds for the graph to become ready
    service_timeout_s: float = 10.0       # per service call
    start_graph: bool = True              # False: attach to an already running graph
    launch_file: str = 'sim.launch.py'
    launch_args: dict = field(default_factory=dict)   # e.g. {'checkpoint': 'models/x.ckpt'}
    sim_node: str = '/sim_node'
    policy_node: str = '/policy_node'
    follower_node: str = '/follower_node'
    task_status_topic: str = '/task_status'
    command_topic: str = '/forward_position_controller/commands'
    record_bag: Optional[str] = None      # folder of a new rosbag2 of the run (None: no bag)
    record_storage: str = 'mcap'
    record_topics: Sequence[str] = DEFAULT_RECORD_TOPICS
    log_dir: Optional[str] = None         # node logs (default: next to the bag, else none)
    jerk_dt_s: float = 0.02
    label: str = ''
    progress: bool = True

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f'episodes must be >= 1, got {self.episodes}')
        for name in ('episode_timeout_s', 'startup_timeout_s', 'service_timeout_s', 'jerk_dt_s'):
            if not getattr(self, name) > 0:
                raise ValueError(f'{name} must be > 0, got {getattr(self, name)}')
        if self.record_storage not in ('mcap', 'sqlite3'):
            raise ValueError(f"record_storage must be 'mcap' or 'sqlite3', got {self.record_storage!r}")
        if self.record_bag and Path(self.record_bag).exists():
            raise ValueError(f'record_bag {self.record_bag} exists already; give a new folder')
        self.launch_args = {str(k): str(v) for k, v in self.launch_args.items()}
        self.record_topics = list(self.record_topics)


class _Runner:
    """The runner's rclpy node, its executor thread and the episode loop."""

    def __init__(self, cfg: ClosedLoopConfig, group=None, log_dir: Optional[Path] = None):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        from dp_msgs.msg import ActionChunk, Counter, FollowerStatus, PolicyStatus, TaskStatus
        from dp_msgs.srv import ResetEpisode, ResetHistory
        from rosgraph_msgs.msg import Clock
        from std_msgs.msg import Float64MultiArray

        self.cfg, self.group, self.log_dir = cfg, group, log_dir
        self.rclpy = rclpy
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context, args=['--ros-args', '-p', 'use_sim_time:=false'])
        self.node = rclpy.create_node('dp_eval_closed_loop', context=self.context)
        self.lock = threading.Lock()
        self.clock_ns: Optional[int] = None
        self.status = None
        self.policy_status = None
        self.follower_status = None
        self.tracker: Optional[EpisodeTracker] = None
        self.last_command_mono = 0.0                 # when a command callback last ran
        self.status_event = threading.Event()
        self.recorder: Optional[RawRecorder] = None
        self.recorded_topics: Optional[list[str]] = None
        self.chunks_seen = 0
        self.controller_rejections = 0   # sim_node's ~/rejected_commands (latched counter)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        n = self.node
        n.create_subscription(Clock, '/clock', self._on_clock, reliable)
        n.create_subscription(TaskStatus, cfg.task_status_topic, self._on_status, latched)
        n.create_subscription(ActionChunk, f'{cfg.policy_node}/action_chunk', self._on_chunk,
                              reliable)
        n.create_subscription(PolicyStatus, f'{cfg.policy_node}/status', self._on_policy_status,
                              latched)
        n.create_subscription(FollowerStatus, f'{cfg.follower_node}/status',
                              self._on_follower_status, latched)
        n.create_subscription(Float64MultiArray, cfg.command_topic, self._on_command, reliable)
        n.create_subscription(Counter, f'{cfg.sim_node}/rejected_commands',
                              self._on_rejected, latched)
        self.reset_client = n.create_client(ResetEpisode, f'{cfg.sim_node}/reset_episode')
        self.history_client = n.create_client(ResetHistory, f'{cfg.policy_node}/reset_history')
        from lifecycle_msgs.srv import ChangeState
        self.ChangeState = ChangeState
        self.follower_lifecycle = n.create_client(ChangeState, f'{cfg.follower_node}/change_state')
        self.ResetEpisode, self.ResetHistory = ResetEpisode, ResetHistory
        # One thread: rclpy's MultiThreadedExecutor (2 threads) cost this process ~0.4 of a core
        # more in `make demo` (user time 94 vs 70 s for 10 episodes) and, on 2 cores, made it miss
        # commands (17 reception gaps vs 0) and the policy slower (p99 55 vs 41 ms); see
        # ros2/rclpy#1223. The callbacks are short; service calls wait on futures in the caller.
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self.spin_thread = threading.Thread(target=self._spin, name='dp_eval_spin', daemon=True)
        self.spin_thread.start()

    # ------------------------------------------------------------------ callbacks
    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - ExternalShutdownException / context shut down
            pass

    def now_ns(self) -> int:
        c = self.clock_ns
        return c if c is not None else time.time_ns()

    def _on_clock(self, msg) -> None:
        self.clock_ns = msg.clock.sec * 1_000_000_000 + msg.clock.nanosec

    def _on_status(self, msg) -> None:
        with self.lock:
            self.status = msg
            if self.tracker is not None:
                if self.tracker.on_status(msg.episode, msg.episode_time_s, msg.distance_m,
                                          msg.success, msg.obstacle_contact, msg.side, msg.done,
                                          msg.min_clearance_m):
                    self.status_event.set()

    def _on_chunk(self, msg) -> None:
        self.chunks_seen += 1
        arrival = self.now_ns() * 1e-9
        pts = msg.trajectory.points
        # joint chunks: the step between chunks in joint space; end-effector chunks (poses, no
        # joint positions): their latency only (the follower's boundary step is in joints)
        joints = getattr(msg, 'action_space', '') != 'ee_pose'
        with self.lock:
            if self.tracker is not None:
                self.tracker.on_chunk(
                    msg.inference_latency_s,
                    msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9,
                    [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in pts],
                    [list(p.positions) for p in pts] if joints else None, arrival)

    def _on_policy_status(self, msg) -> None:
        self.policy_status = msg

    def _on_rejected(self, msg) -> None:
        with self.lock:
            self.controller_rejections = int(msg.count)

    def _on_follower_status(self, msg) -> None:
        with self.lock:
            self.follower_status = msg
            if self.tracker is not None:
                self.tracker.on_follower_status(
                    msg.command_jerk_max_rad_s3, msg.command_jerk_rms_rad_s3,
                    msg.command_jerk_terms, msg.boundary_step_max_rad)

    def _on_command(self, msg) -> None:
        t = self.now_ns() * 1e-9
        with self.lock:
            self.last_command_mono = time.monotonic()
            if self.tracker is not None:
                self.tracker.on_command(t, msg.data)

    # ------------------------------------------------------------------ graph health
    def check_processes(self) -> None:
        if self.group is None:
            return
        dead = self.group.dead_required()
        if dead:
            code = self.group.procs[dead[0]].returncode
            raise ClosedLoopError(f'{dead[0]} exited (code {code}) while the evaluation was '
                                  f'running{log_tail(self.log_dir, dead[0])}')

    def _wait(self, what: str, ok, timeout_s: float, hint=lambda: '') -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.check_processes()
            if ok():
                return
            time.sleep(0.1)
        load = ''
        try:
            import os
            load = (f' (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: an '
                    f'overloaded machine starts nodes slowly; see --startup-timeout)')
        except (OSError, AttributeError):
            pass
        raise ClosedLoopError(f'timed out after {timeout_s:.0f} s waiting for {what}{load}'
                              f'{hint()}')

    def wait_ready(self) -> dict:
        cfg = self.cfg
        t0 = time.monotonic()
        end = t0 + cfg.startup_timeout_s

        def left() -> float:
            return max(1.0, end - time.monotonic())

        self._wait(f'service {cfg.sim_node}/reset_episode (sim_node)',
                   lambda: self.reset_client.service_is_ready(), left(),
                   lambda: log_tail(self.log_dir, cfg.sim_node.strip('/')))

        def policy_ok() -> bool:
            st = self.policy_status
            if st is None:
                return False
            if st.last_skip_reason.startswith('configure failed'):
                raise ClosedLoopError(f'{cfg.policy_node}: {st.last_skip_reason}')
            return st.lifecycle_state == 'active'

        self._wait(f'{cfg.policy_node} to be active (its PolicyStatus)', policy_ok, left(),
                   lambda: (f'; last status: lifecycle {self.policy_status.lifecycle_state!r}, '
                            f'{self.policy_status.last_skip_reason!r}'
                            if self.policy_status is not None else
                            '; no PolicyStatus received yet (policy_node publishes it once it has '
                            'loaded and warmed up the checkpoint)')
                   + log_tail(self.log_dir, cfg.policy_node.strip('/')))
        self._wait(f'{cfg.follower_node}/status', lambda: self.follower_status is not None, left(),
                   lambda: log_tail(self.log_dir, cfg.follower_node.strip('/')))
        self._wait(f'service {cfg.policy_node}/reset_history',
                   lambda: self.history_client.service_is_ready(), left())
        # the first chunk of this policy process: the first episode should not pay its start-up
        seen = self.chunks_seen
        self._wait(f'a first action chunk on {cfg.policy_node}/action_chunk',
                   lambda: self.chunks_seen > seen, left(),
                   lambda: (f'; policy status: {self.policy_status.last_skip_reason!r}'
                            if self.policy_status is not None else ''))
        st = self.policy_status
        return {'startup_s': time.monotonic() - t0, 'checkpoint': st.checkpoint,
                'backend': st.backend, 'device': st.device}

    def call(self, client, request, what: str):
        future = client.call_async(request)
        end = time.monotonic() + self.cfg.service_timeout_s
        while not future.done():
            self.check_processes()
            if time.monotonic() > end:
                client.remove_pending_request(future)
                raise ClosedLoopError(f'{what}: no answer within {self.cfg.service_timeout_s} s')
            time.sleep(0.01)
        return future.result()

    # ------------------------------------------------------------------ recording
    def _record(self, topic: str, msgtype: str, data) -> None:
        rec = self.recorder
        if rec is not None:
            rec.write(topic, msgtype, data, self.now_ns())

    def start_recording(self, path: str) -> list[str]:
        """Record into a new bag at `path`: raw subscriptions (made on the first call) for the
        configured topics that exist in the graph; a later call switches to a new bag."""
        old, self.recorder = self.recorder, RawRecorder(path, self.cfg.record_storage)
        if old is not None:
            old.close()
        if self.recorded_topics is not None:
            return list(self.recorded_topics)
        recorded, skipped = subscribe_raw(self.node, {t: None for t in self.cfg.record_topics},
                                          self._record, status_latched=False)
        if skipped:
            print(f'dp_eval closed-loop: not recording {skipped} (not in the graph)',
                  file=sys.stderr)
        self.recorded_topics = recorded
        return recorded

    def stop_recording(self) -> dict:
        rec, self.recorder = self.recorder, None
        if rec is None:
            return {}
        rec.close()
        return dict(rec.counts)

    # ------------------------------------------------------------------ episodes
    def run_episode(self, index: int, seed: int):
        cfg = self.cfg
        t0 = time.monotonic()
        self.call(self.history_client, self.ResetHistory.Request(), 'policy reset_history')
        # The reset teleports the arm (a simulation can, a robot cannot): the follower is
        # deactivated across it and re-activated once joint states of the new episode have
        # arrived, so that it starts holding the arm where it now is instead of driving it back to
        # where the previous episode ended.
        self._follower_transition('deactivate')
        resp = self.call(self.reset_client, self.ResetEpisode.Request(seed=int(seed)),
                         f'{cfg.sim_node}/reset_episode')
        if not resp.success:
            raise ClosedLoopError(f'{cfg.sim_node}/reset_episode refused: {resp.message}')
        # chunks conditioned on the previous episode must not reach the re-activated follower
        self.call(self.history_client, self.ResetHistory.Request(), 'policy reset_history')
        # Commands of the previous episode still queued here (this process runs late on a loaded
        # machine) must not reach the new episode's tracker: the follower is inactive, so every
        # command callback now is an old one; wait until none came for 0.3 s.
        self._wait_commands_quiet(0.3, timeout_s=5.0)
        self._follower_transition('activate')
        with self.lock:
            self.status_event.clear()
            self.tracker = EpisodeTracker(index, resp.episode, seed, cfg.jerk_dt_s)
            st = self.status
        if st is not None:   # the reset publishes the new episode's first status
            self._on_status(st)
        self.call(self.history_client, self.ResetHistory.Request(), 'policy reset_history')
        end = t0 + cfg.episode_timeout_s
        timed_out = True
        while time.monotonic() < end:
            self.check_processes()
            if self.status_event.wait(0.1):
                self.status_event.clear()
                with self.lock:
                    if self.tracker.done:
                        timed_out = False
                        break
        with self.lock:
            tracker, self.tracker = self.tracker, None
        res = tracker.result()
        res.timed_out = timed_out
        res.wall_s = time.monotonic() - t0
        if timed_out:
            res.error = (f'no done status for episode {res.episode} within '
                         f'{cfg.episode_timeout_s:.0f} s (last episode time '
                         f'{res.episode_time_s:.1f} s)')
        return res

    def _wait_commands_quiet(self, quiet_s: float, timeout_s: float) -> None:
        start = time.monotonic()
        while time.monotonic() < start + timeout_s and \
                time.monotonic() - max(self.last_command_mono, start) < quiet_s:
            time.sleep(0.05)   # (a float read: no lock needed)

    def _follower_transition(self, label: str) -> None:
        """'activate' / 'deactivate' the follower (its lifecycle change_state service)."""
        from lifecycle_msgs.msg import Transition
        node, client = self.cfg.follower_node, self.follower_lifecycle
        if not client.wait_for_service(timeout_sec=self.cfg.service_timeout_s):
            raise ClosedLoopError(f'{node}/change_state not available')
        req = self.ChangeState.Request(transition=Transition(id=getattr(
            Transition, f'TRANSITION_{label.upper()}')))
        if not self.call(client, req, f'{node} {label}').success:
            raise ClosedLoopError(f'{node} refused to {label}')

    def close(self) -> None:
        self.stop_recording()
        # Context first: spin() returns and nothing new is dispatched; then the executor waits for
        # the callbacks in flight before it destroys its guard condition. (Executor shutdown with
        # callbacks still queued, the old order, let rclpy's handler tasks trigger a destroyed
        # guard condition: "exception was never retrieved ... cannot use Destroyable" at exit.)
        self.rclpy.try_shutdown(context=self.context)
        self.spin_thread.join(timeout=5.0)
        try:
            self.executor.shutdown(timeout_sec=10.0)
        except Exception:  # noqa: BLE001
            pass
        try:
            self.node.destroy_node()
        except Exception:  # noqa: BLE001
            pass


@dataclass
class Variant:
    """One policy of a series: the checkpoint, its label and the bag of its episodes."""

    checkpoint: str
    label: str = ''
    record_bag: Optional[str] = None


def run_closed_loop(cfg: ClosedLoopConfig) -> dict:
    """Run cfg.episodes episodes with the checkpoint of cfg.launch_args; returns the JSON-able
    result (kind 'closed_loop'). See run_closed_loop_series."""
    v = Variant(cfg.launch_args.get('checkpoint', ''), cfg.label, cfg.record_bag)
    return run_closed_loop_series(cfg, [v])[0]


def _new_result(cfg: ClosedLoopConfig, v: Variant, log_dir: Optional[Path]) -> dict:
    return {'kind': 'closed_loop', 'label': v.label or (Path(v.checkpoint).stem if v.checkpoint
                                                        else 'policy'),
            'checkpoint': v.checkpoint, 'config': _clean_cfg(cfg), 'episodes': [],
            'partial': False, 'errors': [], 'bag': v.record_bag,
            'logs': str(log_dir) if log_dir else None}


def _clean_cfg(cfg: ClosedLoopConfig) -> dict:
    d = asdict(cfg)
    d['record_topics'] = list(d['record_topics'])
    return d


def _check_files(specs) -> None:
    for s in specs:
        for f in s.params_files:
            if not Path(f).is_file():
                raise ClosedLoopError(f'{s.name}: parameter file {f} does not exist')


def run_closed_loop_series(cfg: ClosedLoopConfig, variants: Sequence[Variant]) -> list[dict]:
    """The episodes of cfg for each variant in turn, in ONE simulation + follower: between
    variants only policy_node is restarted with the next checkpoint (start_graph=True). The same
    seeds (targets) are used for every variant, so they are compared on the same episodes.

    Raises ClosedLoopError when the graph never becomes ready for the first variant. Later, an
    error or an interruption ends the series: the results so far are returned, marked partial.
    """
    variants = _checked_variants(cfg, variants)
    first_bag = next((v.record_bag for v in variants if v.record_bag), None)
    log_dir = Path(cfg.log_dir) if cfg.log_dir else (
        Path(first_bag).parent / (Path(first_bag).name + '_logs') if first_bag else None)
    group = None
    runner = None
    results: list[dict] = []
    old_term = None
    if threading.current_thread() is threading.main_thread():
        def _term(*_):
            raise KeyboardInterrupt
        old_term = signal.signal(signal.SIGTERM, _term)
    result: Optional[dict] = None
    t_start = time.monotonic()
    try:
        for v in variants:
            result = _new_result(cfg, v, log_dir)
            results.append(result)
            t_variant = time.monotonic()
            if cfg.start_graph:
                group = _start_graph(cfg, v, group, runner, log_dir)
            if runner is None:
                runner = _Runner(cfg, group, log_dir)
            _run_variant(cfg, v, runner, result)
            result['wall_s'] = time.monotonic() - t_variant
    except KeyboardInterrupt:
        if result is not None:
            result['partial'] = True
            result['errors'].append('interrupted: results so far are kept')
    except ClosedLoopError as exc:
        if result is None or (not result['episodes'] and len(results) == 1):
            raise
        result['partial'] = True
        result['errors'].append(str(exc))
    finally:
        if runner is not None:
            counts = runner.stop_recording()
            if result is not None and counts:
                result['recorded_messages'] = counts
            runner.close()
        if group is not None:
            codes = group.stop()
            for r in results:
                r['exit_codes'] = codes
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    for r in results:
        if 'metrics' not in r:
            r['metrics'] = summarize_episodes(r['episodes'])
            r['wall_s'] = time.monotonic() - t_start
    return results


def _checked_variants(cfg: ClosedLoopConfig, variants: Sequence[Variant]) -> list[Variant]:
    variants = list(variants)
    if not variants:
        raise ValueError('no checkpoint to evaluate')
    if len(variants) > 1 and not cfg.start_graph:
        raise ValueError('several checkpoints need start_graph (an attached graph has one policy)')
    for v in variants:
        if v.checkpoint and not Path(v.checkpoint).is_file():
            raise ClosedLoopError(f'checkpoint {v.checkpoint} does not exist')
        if v.record_bag and Path(v.record_bag).exists():
            raise ValueError(f'record_bag {v.record_bag} exists already; give a new folder')
    return variants


def _start_graph(cfg: ClosedLoopConfig, v: Variant, group, runner, log_dir: Optional[Path]):
    """The graph of cfg.launch_file with v's checkpoint: started (group None), or only its
    policy node restarted with the new checkpoint. Returns the group."""
    from dp_bringup.graphs import GRAPHS
    from dp_bringup.starter import ProcessGroup
    if cfg.launch_file not in GRAPHS:
        raise ClosedLoopError(f'unknown launch file {cfg.launch_file!r}; known: {sorted(GRAPHS)}')
    args = dict(cfg.launch_args)
    if v.checkpoint:
        args['checkpoint'] = v.checkpoint
    try:
        specs = GRAPHS[cfg.launch_file].build(args)
    except SystemExit as exc:   # the graphs report bad arguments this way
        raise ClosedLoopError(str(exc)) from None
    _check_files(specs)
    if group is not None:       # next checkpoint: restart the policy node only
        name = cfg.policy_node.strip('/')
        _restart(group, {s.name: s for s in specs}[name], runner)
        return group
    group = ProcessGroup(specs, log_dir=str(log_dir) if log_dir else None, quiet=True)
    print(f'dp_eval closed-loop: starting {", ".join(s.name for s in specs)}'
          + (f' (logs in {log_dir})' if log_dir else ''), file=sys.stderr)
    try:
        group.start()
    except BaseException:   # the nodes started so far run in sessions of their own: stop them
        group.stop()
        raise
    return group


def _run_variant(cfg: ClosedLoopConfig, v: Variant, runner: '_Runner', result: dict) -> None:
    """cfg.episodes episodes of one checkpoint on the ready graph, into result."""
    from dp_eval.progress import bar as make_bar
    ready = runner.wait_ready()
    result['graph'] = ready
    if not result['checkpoint']:
        result['checkpoint'] = ready['checkpoint']
    print(f'dp_eval closed-loop: {result["label"]}: ready in {ready["startup_s"]:.1f} s '
          f'(policy backend {ready["backend"]} on {ready["device"]})', file=sys.stderr)
    if v.record_bag:
        result['recorded_topics'] = runner.start_recording(v.record_bag)
    rejections0 = runner.controller_rejections
    faults0 = runner.follower_status.tracking_faults if runner.follower_status else 0
    accepted0, rejected0 = _follower_counts(runner.follower_status)
    bar = make_bar(cfg.episodes, f'closed loop {result["label"]}', 'episode', cfg.progress)
    try:
        for i in range(cfg.episodes):
            res = runner.run_episode(i, cfg.seed + i)
            result['episodes'].append(res.to_dict())
            done = result['episodes']
            bar.update(1)
            bar.set_postfix_str(f'success {sum(e["success"] for e in done)}/{len(done)}')
            if res.error:
                result['errors'].append(f'episode {i}: {res.error}')
    finally:
        bar.close()
    if v.record_bag:
        result['recorded_messages'] = runner.stop_recording()
    result['metrics'] = summarize_episodes(result['episodes'])
    # Commands the simulated controllers refused during this checkpoint's episodes (sim_node's
    # latched counter; jtc_distro's rules for joint trajectories).
    time.sleep(0.2)
    result['controller_rejections'] = runner.controller_rejections - rejections0
    status = runner.follower_status   # the follower's tracking faults meanwhile
    result['tracking_faults'] = int(status.tracking_faults) - faults0 if status else None
    # the chunks the follower took and refused meanwhile, by reason (ik_unreachable: an
    # end-effector chunk its arm cannot follow)
    accepted, rejected = _follower_counts(status)
    result['follower_chunks_accepted'] = accepted - accepted0 if status else None
    result['follower_rejections'] = {k: n - rejected0.get(k, 0) for k, n in rejected.items()
                                     if n - rejected0.get(k, 0)}


def _follower_counts(status) -> tuple[int, dict]:
    """(chunks accepted, rejections by reason) of a FollowerStatus (0, {} for None)."""
    if status is None:
        return 0, {}
    return int(status.chunks_accepted), {c.name: int(c.count) for c in status.rejected}


def _restart(group, spec, runner) -> None:
    """Stop one node of the group (SIGINT, then harder) and start it again from `spec`."""
    proc = group.procs.get(spec.name)
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        for sig, wait_s in ((None, 10.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if sig is not None and proc.poll() is None:
                proc.send_signal(sig)
            end = time.monotonic() + wait_s
            while proc.poll() is None and time.monotonic() < end:
                time.sleep(0.05)
    if runner is not None:
        runner.policy_status = None       # the old node's latched status is not the new one's
    if group.log_dir is not None:         # keep the previous run's log beside the new one
        old_log = group.log_dir / f'{spec.name}.log'
        if old_log.is_file():
            k = 1
            while (group.log_dir / f'{spec.name}.{k}.log').exists():
                k += 1
            old_log.rename(group.log_dir / f'{spec.name}.{k}.log')
    print(f'dp_eval closed-loop: restarting {spec.name} with {spec.parameters.get("checkpoint")}',
          file=sys.stderr)
    group.start_one(spec)
