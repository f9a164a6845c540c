"""Live replay: play a recorded bag into the running policy graph, record its outputs, compare.

What it does (`ros2 bag play` + `ros2 bag record` + a comparison, where the ros2 CLI is absent):
1. optionally starts a node graph (dp_bringup GRAPHS, e.g. real_arm.launch.py with
   use_sim_time:=true and robot:=embedded_arm), else uses the one already running;
2. subscribes (raw CDR) to the graph's outputs (by default the policy node's trajectory,
   action_chunk and status, the follower's commands and status) and writes them into a new
   rosbag2, log time = the played /clock time (or wall time without --clock);
3. plays the bag's observation topics (by default every JointState / Image / CompressedImage
   topic; the recorded commands are the reference, so they are not played) at real time x rate,
   with /clock (player.py);
4. compares every recorded dp_msgs/ActionChunk with the bag's demonstrator commands at the
   chunk's times (action i is for header.stamp + (i - first_action_index) * dt_s): error per
   joint and per horizon step, jerk of chunks vs demonstration, inference latency.

The reference commands come from dp_policy.data.dataset (the same decoder as training and offline
replay) on the checkpoint's dt grid; the chunk joints are matched by name.

What it is not: closed loop (the played observations do not react to the policy's commands).
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from dp_common import metrics
from dp_eval import bagio

__all__ = ['LiveConfig', 'run_live', 'compare_chunks', 'DEFAULT_LIVE_RECORD', 'OBSERVATION_TYPES']

OBSERVATION_TYPES = ('sensor_msgs/msg/JointState', 'sensor_msgs/msg/Image',
                     'sensor_msgs/msg/CompressedImage', 'sensor_msgs/msg/CameraInfo')

DEFAULT_LIVE_RECORD = {
    '/policy_node/action_chunk': 'dp_msgs/msg/ActionChunk',
    '/policy_node/trajectory': 'trajectory_msgs/msg/JointTrajectory',
    '/policy_node/status': 'dp_msgs/msg/PolicyStatus',
    '/forward_position_controller/commands': 'std_msgs/msg/Float64MultiArray',
    '/follower_node/status': 'dp_msgs/msg/FollowerStatus',
}


@dataclass
class LiveConfig:
    bag: str
    out_bag: str                                   # new bag folder for the graph's outputs
    rate: float = 1.0
    clock: bool = True
    play_topics: Optional[list[str]] = None        # None: the bag's observation topics
    record_topics: Optional[list[str]] = None      # None: DEFAULT_LIVE_RECORD
    record_storage: str = 'mcap'
    command_topic: str = '/forward_position_controller/commands'   # reference, in the played bag
    command_joint_names: list[str] = field(default_factory=list)
    action_chunk_topic: str = '/policy_node/action_chunk'
    discovery_s: float = 2.0                       # wait for subscriptions to match before playing
    settle_s: float = 1.0                          # keep recording after the bag ends
    launch_file: Optional[str] = None              # start this graph (None: attach)
    launch_args: dict = field(default_factory=dict)
    ready_timeout_s: float = 120.0                 # for a started graph: first action chunk
    log_dir: Optional[str] = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f'live replay needs rate > 0, got {self.rate}')
        if Path(self.out_bag).exists():
            raise ValueError(f'out_bag {self.out_bag} exists already; give a new folder')
        if self.record_storage not in ('mcap', 'sqlite3'):
            raise ValueError(f"record_storage must be 'mcap' or 'sqlite3', got "
                             f'{self.record_storage!r}')


def _reference(bag: str, joint_names: Sequence[str], dt_s: float, command_topic: str,
               command_joint_names: Sequence[str]):
    """The bag's demonstrator commands on a dt grid: (t (N,) seconds, q (N, A))."""
    from dp_policy.data.dataset import DatasetConfig, decode_bag
    present = bagio.bag_topics(bag)
    js = next((t for t, ty in present.items() if ty == 'sensor_msgs/msg/JointState'), None)
    if js is None:
        raise bagio.MissingTopicError(bag, '(a sensor_msgs/msg/JointState topic)', present)
    bagio.require_topics(bag, [command_topic])
    cfg = DatasetConfig(joint_names=list(joint_names), cameras={}, joint_states_topic=js,
                        command_topic=command_topic, dt_s=float(dt_s),
                        command_joint_names=list(command_joint_names))
    eps = decode_bag(bag, cfg)
    t = np.concatenate([e.t for e in eps])
    q = np.concatenate([e.action for e in eps]).astype(np.float64)
    return t, q


def compare_chunks(chunks: Sequence, ref_t: np.ndarray, ref_q: np.ndarray,
                   joint_names: Sequence[str], traces: int = 12) -> dict:
    """chunks: deserialized dp_msgs/ActionChunk objects (rosbags or rclpy), in arrival order."""
    from dp_common.joints import JointIndexer
    from dp_common.stamps import stamp_to_ns
    if not chunks:
        return {'chunks': 0}
    names = list(joint_names)
    preds, truths, masks, lat, where = [], [], [], [], []
    trace = {'t': [], 'recorded': [], 'chunks': [], 'joint_names': names}
    dt_ref = float(np.median(np.diff(ref_t))) if len(ref_t) > 1 else 0.1
    H = max(len(c.trajectory.points) for c in chunks)
    joints = JointIndexer(names)
    for c in chunks:
        cn = [str(n) for n in c.trajectory.joint_names]
        cols, reason = joints.indices(cn)
        if cols is None:
            raise ValueError(f'action chunk joints {cn}: {reason} (reference joints {names})')
        pos = np.asarray([np.asarray(p.positions, dtype=np.float64)[cols]
                          for p in c.trajectory.points])                       # (h, A)
        if len(pos) < H:
            continue
        stamp = stamp_to_ns(c.header.stamp) * 1e-9
        t = stamp + (np.arange(H) - int(c.first_action_index)) * float(c.dt_s)   # (H,)
        # zero-order hold of the grid commands, as the demonstrator's command stream is
        idx = np.searchsorted(ref_t, t + 1e-9, side='right') - 1
        ok = (idx >= 0) & (t <= ref_t[-1] + dt_ref)
        truth = ref_q[np.clip(idx, 0, len(ref_t) - 1)]
        preds.append(pos)
        truths.append(truth)
        masks.append(ok)
        lat.append(float(c.inference_latency_s))
        where.append(('bag', float(stamp - ref_t[0])))
        if len(trace['chunks']) < traces and ok.any():
            trace['chunks'].append({'t': (t - ref_t[0]).tolist(), 'pred': pos.tolist()})
    if not preds:
        return {'chunks': 0}
    pred, truth, mask = np.stack(preds), np.stack(truths), np.stack(masks)
    dt = float(chunks[0].dt_s)
    trace['t'] = (ref_t - ref_t[0]).tolist()
    trace['recorded'] = ref_q.tolist()
    return {
        'chunks': int(len(pred)),
        'chunks_outside_bag': int((~mask.any(axis=1)).sum()),
        'error': metrics.horizon_errors(pred, truth, mask, names),
        'examples': metrics.worst_and_median(pred, truth, mask, dt, where),
        'jerk': metrics.jerk_stats(pred, truth, dt, mask, names),
        'latency': metrics.latency_stats(lat),
        'latency_samples_s': lat,
        'trace': trace,
    }


def _read_chunks(bag: str, topic: str) -> list:
    out = []
    present = bagio.bag_topics(bag)
    if topic not in present:
        return out
    for raw in bagio.iter_raw(bag, [topic]):
        out.append(bagio.deserialize(raw))
    return out


def run_live(cfg: LiveConfig) -> dict:
    """Play, record, compare; returns the JSON-able result (kind 'live')."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from dp_eval.graph import RawRecorder

    t_start = time.monotonic()
    bag = str(cfg.bag)
    play_topics = _play_topics(bag, cfg)
    result: dict = {'kind': 'live', 'label': Path(bag).name, 'bag': bag, 'out_bag': cfg.out_bag,
                    'played_topics': play_topics, 'partial': False, 'errors': [],
                    'checkpoint': cfg.launch_args.get('checkpoint', '')}
    group = None
    log_dir = Path(cfg.log_dir) if cfg.log_dir else Path(cfg.out_bag).parent / 'live_logs'
    if cfg.launch_file:
        from dp_bringup.graphs import GRAPHS
        from dp_bringup.starter import ProcessGroup
        try:
            specs = GRAPHS[cfg.launch_file].build(dict(cfg.launch_args))
        except (KeyError, SystemExit) as exc:
            raise ValueError(f'cannot build graph {cfg.launch_file}: {exc}') from None
        group = ProcessGroup(specs, log_dir=str(log_dir), quiet=True)
        group.start()
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('dp_eval_live', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spin = threading.Thread(target=lambda: _spin(executor), daemon=True)
    spin.start()
    recorder = RawRecorder(cfg.out_bag, cfg.record_storage)
    clock_ns = [None]
    try:
        _record_outputs(node, cfg, recorder, clock_ns, result)
        _play(node, context, bag, cfg, play_topics, clock_ns, group, log_dir, result)
    except KeyboardInterrupt:
        result['partial'] = True
        result['errors'].append('interrupted: results so far are kept')
    finally:
        recorder.close()
        try:
            executor.shutdown(timeout_sec=2.0)
            node.destroy_node()
        except Exception:  # noqa: BLE001
            pass
        rclpy.try_shutdown(context=context)
        if group is not None:
            result['exit_codes'] = group.stop()
    result['recorded_messages'] = dict(recorder.counts)
    result['metrics'] = _live_metrics(bag, cfg, play_topics, recorder, result)
    result['wall_s'] = time.monotonic() - t_start
    print(f'dp_eval live: recorded {result["metrics"]["recorded"]} messages into {cfg.out_bag}',
          file=sys.stderr)
    return result


def _play_topics(bag: str, cfg: LiveConfig) -> list[str]:
    """The bag topics to play (given, or its observations), checked present with the commands."""
    present = bagio.bag_topics(bag)
    if cfg.play_topics:
        for t in cfg.play_topics:
            if t not in present:
                raise bagio.MissingTopicError(bag, t, present)
        play_topics = list(cfg.play_topics)
    else:
        play_topics = sorted(t for t, ty in present.items() if ty in OBSERVATION_TYPES)
        if not play_topics:
            raise bagio.MissingTopicError(bag, '(observation topics: JointState, Image)', present)
    bagio.require_topics(bag, [cfg.command_topic])
    return play_topics


def _record_outputs(node, cfg: LiveConfig, recorder, clock_ns: list, result: dict) -> None:
    """Raw subscriptions of the graph's outputs into the recorder, stamped with the played
    /clock (the wall clock before the first)."""
    from dp_eval.graph import subscribe_raw
    record = ({t: DEFAULT_LIVE_RECORD.get(t) for t in cfg.record_topics}
              if cfg.record_topics else dict(DEFAULT_LIVE_RECORD))

    def write(topic, msgtype, data):
        recorder.write(topic, msgtype, data,
                       clock_ns[0] if clock_ns[0] is not None else time.time_ns())
    _, skipped = subscribe_raw(node, record, write)
    for topic in skipped:
        result['errors'].append(f'not recorded: type of {topic} unknown (not in the graph)')


def _play(node, context, bag: str, cfg: LiveConfig, play_topics: list, clock_ns: list, group,
          log_dir: Path, result: dict) -> None:
    """The bag's observations played into the graph (with /clock, noted in clock_ns), once the
    policy node is active and the topics have subscribers; then cfg.settle_s more recorded."""
    from dp_eval.player import BagPlayer, PlayOptions, RosSink
    options = PlayOptions(rate=cfg.rate, clock=cfg.clock, topics=play_topics,
                          delay_s=cfg.discovery_s)
    player = BagPlayer(bag, options, sink=None, progress=cfg.progress,  # type: ignore[arg-type]
                       should_stop=lambda: not context.ok())
    sink = RosSink(node, bag, player.topics, options.remap)

    class _ClockTap:
        def publish(self, *a):
            sink.publish(*a)

        def publish_clock(self, stamp_ns):
            clock_ns[0] = stamp_ns
            sink.publish_clock(stamp_ns)
    player.sink = _ClockTap()
    _wait_policy_active(node, cfg, group, log_dir, result)
    missing = sink.wait_for_subscribers(cfg.discovery_s + (10.0 if group is not None else 0))
    if missing:
        result['errors'].append(f'no subscriber on {missing} when playing started')
    stats = player.run()
    time.sleep(cfg.settle_s)
    result['play'] = {'published': stats.published, 'clock_messages': stats.clock_messages,
                      'wall_s': stats.wall_s}
    if stats.error:
        result['partial'] = True
        result['errors'].append(stats.error)


def _live_metrics(bag: str, cfg: LiveConfig, play_topics: list, recorder, result: dict) -> dict:
    """Counts, and the recorded chunks compared with the bag's commands."""
    chunks = _read_chunks(cfg.out_bag, cfg.action_chunk_topic)
    m: dict = {'played': int(sum((result.get('play') or {}).get('published', {}).values())),
               'recorded': int(sum(recorder.counts.values()))}
    if not chunks:
        result['errors'].append(f'no message on {cfg.action_chunk_topic} was recorded: is the '
                                f'policy node running and subscribed to {play_topics}?')
        return m
    if getattr(chunks[0], 'action_space', '') == 'ee_pose':
        result['errors'].append('the chunks are end-effector poses: live replay compares joint '
                                'chunks with the recorded commands only (the counts stand; use '
                                'dp_eval offline, which scores poses, or closed-loop)')
        return m
    names = [str(n) for n in chunks[0].trajectory.joint_names]
    try:
        ref_t, ref_q = _reference(bag, names, float(chunks[0].dt_s), cfg.command_topic,
                                  cfg.command_joint_names)
        m['comparison'] = compare_chunks(chunks, ref_t, ref_q, names)
    except Exception as exc:  # noqa: BLE001 - a broken reference is reported, not fatal
        result['partial'] = True
        result['errors'].append(f'comparison failed: {type(exc).__name__}: {exc}')
    return m


def _wait_policy_active(node, cfg: LiveConfig, group, log_dir: Path, result: dict) -> None:
    """Until the policy node's latched PolicyStatus says 'active' (started graph: required within
    ready_timeout_s; attached graph: waited for discovery_s, then played anyway with a note)."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from dp_eval.closed_loop import ClosedLoopError
    from dp_eval.graph import log_tail
    from dp_msgs.msg import PolicyStatus
    status_topic = cfg.action_chunk_topic.rsplit('/', 1)[0] + '/status'
    seen: list = [None]
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    sub = node.create_subscription(PolicyStatus, status_topic,
                                   lambda m: seen.__setitem__(0, m), qos)
    end = time.monotonic() + (cfg.ready_timeout_s if group is not None else cfg.discovery_s)
    try:
        while time.monotonic() < end:
            if group is not None:
                dead = group.dead_required()
                if dead:
                    raise ClosedLoopError(f'{dead[0]} exited{log_tail(log_dir, dead[0])}')
            st = seen[0]
            if st is not None:
                if st.last_skip_reason.startswith('configure failed'):
                    raise ClosedLoopError(f'{status_topic}: {st.last_skip_reason}')
                if st.lifecycle_state == 'active':
                    return
            time.sleep(0.1)
        if group is not None:
            raise ClosedLoopError(f'the policy node did not become active within '
                                  f'{cfg.ready_timeout_s:.0f} s{log_tail(log_dir, "policy_node")}')
        result['errors'].append(f'no active PolicyStatus on {status_topic}: played anyway')
    finally:
        node.destroy_subscription(sub)


def _spin(executor) -> None:
    try:
        executor.spin()
    except Exception:  # noqa: BLE001 - shutdown
        pass
