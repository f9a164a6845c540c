"""demonstrator_node: the scripted expert driving the arm through the ros2_control topic interface.

For each episode it calls the simulation's reset service, waits for the first joint state of the
new episode, plans a demonstration with dp_sim.expert.ScriptedExpert (left or right of the post,
p = 0.5) and publishes joint position commands on /forward_position_controller/commands at
`command_rate_hz` (simulated time), exactly what a teleoperator's command stream would be. The
episode ends when the task status says done, or after `episode_timeout_s`. After `episodes`
episodes (0: forever) it prints a one-line JSON summary and exits 0.

The expert knows the target position from the reset response (privileged information); a
policy trained on the recordings sees it only in the camera image.
"""
from __future__ import annotations

import json
import sys
from enum import Enum

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from dp_common.joints import JointIndexer
from dp_common.node_main import run_node
from dp_common.params import declare_parameters, load_parameter_table
from dp_common.stamps import stamp_to_sec
from dp_msgs.msg import TaskStatus
from dp_msgs.srv import ResetEpisode
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from .env import JOINT_NAMES
from .expert import ExpertConfig, ScriptedExpert, balanced_sides


class Phase(Enum):
    WAIT_READY = 0
    RESETTING = 1
    WAIT_STATE = 2
    RUNNING = 3
    FINISHED = 4


class DemonstratorNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('demonstrator_node', **kwargs)
        p = declare_parameters(self, load_parameter_table('dp_sim', 'demonstrator_node'))
        self.episodes = int(p['episodes'])
        self.seed = int(p['seed'])
        self.timeout_s = float(p['episode_timeout_s'])
        self.min_subs = int(p['min_command_subscribers'])
        self.expert = ScriptedExpert(ExpertConfig(p_left=float(p['p_left'])), seed=self.seed)
        self.count_successes_only = bool(p['count_successes_only'])
        self.sides = (balanced_sides(np.random.default_rng([self.seed, 1]))
                      if bool(p['balanced_sides']) else None)
        self.side = None
        self.indexer = JointIndexer(JOINT_NAMES)

        reliable10 = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_cmd = self.create_publisher(Float64MultiArray, p['command_topic'], reliable10)
        self.create_subscription(JointState, 'joint_states', self._on_joint_state, reliable10)
        self.create_subscription(TaskStatus, 'task_status', self._on_status, latched)
        self.reset_client = self.create_client(ResetEpisode, p['reset_service'])
        self.create_timer(1.0 / float(p['command_rate_hz']), self._tick)

        self.phase = Phase.WAIT_READY
        self.q = None
        self.q_stamp = -1.0
        self.status: TaskStatus | None = None
        self.episode_id = -1
        self.episode_start_s = 0.0
        self.plan = None
        self.plan_t0 = 0.0
        self.done_count = 0
        self.counted = 0
        self.results: list[dict] = []
        self._future = None
        self._ready_since = None

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_state(self, msg: JointState) -> None:
        q, why = self.indexer.from_joint_state(msg)
        if q is None:
            return
        self.q = q
        self.q_stamp = stamp_to_sec(msg.header.stamp)

    def _on_status(self, msg: TaskStatus) -> None:
        self.status = msg

    def _tick(self) -> None:
        if self.phase == Phase.WAIT_READY:
            ready = (self.reset_client.service_is_ready() and self.q is not None
                     and self.pub_cmd.get_subscription_count() >= self.min_subs)
            if not ready:
                return
            if self._ready_since is None:  # give late joiners (the recorder) a moment
                self._ready_since = self.now_s()
            if self.now_s() - self._ready_since >= 0.5:
                self._request_reset()
        elif self.phase == Phase.RESETTING:
            if self._future is not None and self._future.done():
                res = self._future.result()
                self._future = None
                if res is None or not res.success:
                    self.get_logger().error('reset failed; retrying')
                    self._request_reset()
                    return
                self.episode_id = res.episode
                self.target = np.array([res.target.x, res.target.y])
                self.phase = Phase.WAIT_STATE
        elif self.phase == Phase.WAIT_STATE:
            st = self.status
            # A joint state strictly after the reset instant (episode start = status stamp minus
            # episode time): the one stamped at the reset instant may still be the previous
            # episode's final pose (the reset does not advance time). Compare with the start,
            # not with the newest status: joint states may be delivered later than statuses.
            if st is not None and st.episode == self.episode_id:
                start_s = stamp_to_sec(st.header.stamp) - st.episode_time_s
                if self.q_stamp > start_s + 1e-6:
                    self.episode_start_s = start_s
                    if self.side is None and self.sides is not None:
                        self.side = next(self.sides)
                    self.plan = self.expert.plan(self.q, self.target, side=self.side)
                    self.plan_t0 = self.now_s()
                    self.phase = Phase.RUNNING
        elif self.phase == Phase.RUNNING:
            t = self.now_s() - self.plan_t0
            self.pub_cmd.publish(Float64MultiArray(data=self.plan.command_at(t).tolist()))
            st = self.status
            finished = st is not None and st.episode == self.episode_id and st.done
            if finished or t > self.timeout_s:
                self._finish_episode(st if st is not None and st.episode == self.episode_id else None)

    def _request_reset(self) -> None:
        self._future = self.reset_client.call_async(
            ResetEpisode.Request(seed=self.seed + self.done_count))
        self.phase = Phase.RESETTING

    def _finish_episode(self, st: TaskStatus | None) -> None:
        result = {'episode': self.episode_id, 'planned_side': self.plan.side,
                  'success': bool(st.success) if st else False,
                  'side': st.side if st else '', 'contact': bool(st.obstacle_contact) if st else False,
                  'duration_s': round(st.episode_time_s, 3) if st else None}
        self.results.append(result)
        self.done_count += 1
        if result['success'] or not self.count_successes_only:
            self.side = None  # next episode: next side; a failed one is retried on the same side
            self.counted += 1
        self.get_logger().info(f'episode {self.episode_id}: {result}')
        if self.episodes and self.counted >= self.episodes:
            self.phase = Phase.FINISHED
            n = len(self.results)
            summary = {'episodes': n,
                       'success_rate': sum(r['success'] for r in self.results) / n,
                       'left': sum(r['side'] == 'left' for r in self.results),
                       'right': sum(r['side'] == 'right' for r in self.results)}
            print('DEMONSTRATOR_SUMMARY ' + json.dumps(summary), flush=True)
        else:
            self._request_reset()


def main(args=None) -> None:
    # Exits 0 after `episodes` episodes (or on SIGINT).
    sys.exit(run_node(DemonstratorNode, args, done=lambda n: n.phase == Phase.FINISHED))


if __name__ == '__main__':
    main()
