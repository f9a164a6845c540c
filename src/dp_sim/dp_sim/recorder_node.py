"""recorder_node: writes each episode of the task as its own rosbag2 folder.

Subscribes to the recorded topics with raw=True (the serialized CDR bytes are written as they
came, no deserialize/serialize round trip) and with message info, and hands everything to the
ROS-free dp_sim.recorder.EpisodeRecorder, which:

- splits episodes at the task status (dp_msgs/TaskStatus): a status with a new episode number
  opens `<output_dir>/<bag_prefix><episode:04d>`, the first status with done=true closes it;
- stamps every message with its **publication** time in the graph's time (simulated or not):
  interpolated at the message's DDS source timestamp from the time reference topics (the
  simulation's joint states and task status, whose header stamps are their publication time).
  Receipt time (what `ros2 bag record` uses) would shift headerless commands against the images
  whenever the recorder is busy. The node needs no /clock and no use_sim_time.

Episodes whose start was missed (the recorder came up mid-episode) are skipped. Failed episodes
(success false at the end, or cut off by shutdown) are moved to `<output_dir>/.failed/` unless
keep_failed is true, so that `<output_dir>` holds only demonstrations worth training on (the
dataset reader skips hidden folders). One JSON line per episode goes to stdout (`RECORDED {...}`).
"""
from __future__ import annotations

import importlib
import json
import shutil
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

from dp_common.node_main import run_node
from dp_common.params import declare_parameters, load_parameter_table

from dp_msgs.msg import TaskStatus

from .recorder import HEADER_TYPES, EpisodeBag, EpisodeRecorder, StatusInfo, cdr_header_stamp_ns


def _msg_class(type_name: str):
    pkg, kind, name = type_name.split('/')
    return getattr(importlib.import_module(f'{pkg}.{kind}'), name)


def _source_ns(info) -> int:
    """The publisher's wall-clock source timestamp (ns); receipt wall time if the RMW gives none."""
    w = int(info.get('source_timestamp', 0) or 0) if info else 0
    return w if w > 0 else time.time_ns()


class RecorderNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('recorder_node', **kwargs)
        p = declare_parameters(self, load_parameter_table('dp_sim', 'recorder_node'))
        topics, types = list(p['topics']), list(p['types'])
        if len(topics) != len(types):
            raise ValueError('topics and types must have the same length')
        if p['storage'] not in ('sqlite3', 'mcap'):
            raise ValueError(f"storage must be 'sqlite3' or 'mcap', got {p['storage']!r}")
        self.out = Path(p['output_dir']).expanduser().resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.storage = p['storage']
        self.prefix = p['bag_prefix']
        self.keep_failed = bool(p['keep_failed'])
        self.status_topic = self.resolve_topic_name(p['status_topic'])
        # Bag topic names are absolute, as `ros2 bag record` writes them.
        self.topics = {self.resolve_topic_name(t): ty for t, ty in zip(topics, types)}
        if self.status_topic not in self.topics:
            self.topics[self.status_topic] = 'dp_msgs/msg/TaskStatus'
        refs = {self.resolve_topic_name(t) for t in p['time_reference_topics']}
        for t in refs:
            if self.topics.get(t) not in HEADER_TYPES:
                raise ValueError(f'time reference topic {t} must be a recorded topic with a header')
        sporadic = {self.resolve_topic_name(t) for t in p['sporadic_topics']}
        self.core = EpisodeRecorder([t for t in self.topics if t not in sporadic],
                                    self.status_topic, self._open_bag,
                                    self._on_closed,
                                    max_start_delay_s=float(p['max_start_delay_s']),
                                    max_lag_s=float(p['max_lag_s']))
        self.recorded: list[dict] = []

        depth = int(p['queue_depth'])
        self._steady_subs: dict = {}
        for topic, type_name in self.topics.items():
            latched = topic == self.status_topic
            qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                             durability=(DurabilityPolicy.TRANSIENT_LOCAL if latched
                                         else DurabilityPolicy.VOLATILE))
            if latched:
                cb = self._on_status
            elif topic in refs:
                cb = (lambda raw, info, t=topic: self.core.on_message(
                    t, _source_ns(info), raw, cdr_header_stamp_ns(raw)))
            else:
                cb = (lambda raw, info, t=topic: self.core.on_message(t, _source_ns(info), raw))
            sub = self.create_subscription(_msg_class(type_name), topic, cb, qos, raw=True)
            if topic not in sporadic:
                self._steady_subs[topic] = sub
        self.get_logger().info(f'recording {sorted(self.topics)} into {self.out} ({self.storage}); '
                               f'log times: publication time from {sorted(refs)}')
        print('RECORDER_READY', flush=True)
        # Matched with a publisher of every steady topic (sensors, status): from here on nothing
        # they publish is missed. Whoever starts episodes (dp_record_demos) waits for this line.
        self._matched = False
        self._match_timer = self.create_timer(0.05, self._check_matched)

    def _check_matched(self) -> None:
        missing = [t for t, sub in self._steady_subs.items() if sub.get_publisher_count() < 1]
        if not missing:
            self._matched = True
            self._match_timer.cancel()
            self.get_logger().info('matched with publishers of every recorded sensor topic')
            print('RECORDER_MATCHED', flush=True)

    def _open_bag(self, episode: int) -> EpisodeBag:
        return EpisodeBag(self.out / f'{self.prefix}{episode:04d}', self.topics, self.storage)

    def _on_status(self, raw: bytes, info) -> None:
        st = deserialize_message(raw, TaskStatus)
        self.core.on_status(_source_ns(info), StatusInfo(
            stamp_ns=st.header.stamp.sec * 1_000_000_000 + st.header.stamp.nanosec,
            episode=st.episode, episode_time_s=st.episode_time_s, success=st.success,
            obstacle_contact=st.obstacle_contact, side=st.side, done=st.done), raw)

    def _on_closed(self, info: dict) -> None:
        if not info['success'] and not self.keep_failed:
            failed = self.out / '.failed'
            failed.mkdir(exist_ok=True)
            src = Path(info['bag'])
            dest = failed / src.name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.move(str(src), str(dest))
            info['bag'] = str(dest)
        self.recorded.append(info)
        print('RECORDED ' + json.dumps(info), flush=True)

    def finish(self) -> None:
        self.core.finish()
        c = self.core
        # One line that tells what arrived, for the logs of a run that recorded nothing.
        print('RECORDER_SUMMARY ' + json.dumps({
            'episodes_closed': len(self.recorded), 'last_episode_seen': c.episode,
            'status_seen': c._status_w is not None,
            'newest_source_ns': {t: n for t, n in c._newest.items()},
            'skipped_late': c.skipped_late, 'between_episodes': c.between, 'late': c.late,
            'dropped_overflow': c.dropped_overflow}), flush=True)


def main(args=None) -> int:
    # finish(): write what is pending and close the open bags, also on SIGINT.
    return run_node(RecorderNode, args, cleanup=RecorderNode.finish)


if __name__ == '__main__':
    main()
