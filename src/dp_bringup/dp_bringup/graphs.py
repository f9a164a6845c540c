"""The node graphs of launch/*.launch.py, for the process starter (dp_launch) and `make demo`.

Each Graph mirrors one launch file: same launch arguments (names, defaults, descriptions), same
nodes (package, executable, name), same parameter files in the same order, same remappings.
test/test_launch_consistency.py parses the launch files and compares them with these graphs, so
the two cannot drift apart. gazebo.launch.py has no graph here: it needs Gazebo.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dp_bringup.starter import NodeSpec, share_file


@dataclass
class LaunchArgument:
    name: str
    default: object  # a str, a ('dp_bringup', 'config/x.yaml') share path, or None (required)
    description: str

    def resolve(self, given: dict[str, str]) -> str:
        if self.name in given:
            return given[self.name]
        if self.default is None:
            raise SystemExit(f'launch argument {self.name!r} is required: {self.description}')
        if isinstance(self.default, tuple):
            return share_file(self.default[0], *self.default[1].split('/'))
        return str(self.default)


@dataclass
class Graph:
    arguments: list[LaunchArgument]
    nodes: Callable[[dict[str, str]], list[NodeSpec]]

    def build(self, given: dict[str, str]) -> list[NodeSpec]:
        known = {a.name for a in self.arguments}
        unknown = set(given) - known
        if unknown:
            raise SystemExit(f'unknown launch arguments {sorted(unknown)}; known: {sorted(known)}')
        return self.nodes({a.name: a.resolve(given) for a in self.arguments})


def _bool(text: str) -> bool:
    return str(text).lower() in ('1', 'true', 'yes', 'on')


# The parameter files of policy_node and follower_node: every graph that runs them takes these.
NODE_PARAMS_ARGS = [
    LaunchArgument('policy_params_file', ('dp_bringup', 'config/policy_node.yaml'),
                   'Parameters of policy_node.'),
    LaunchArgument('follower_params_file', ('dp_bringup', 'config/follower.yaml'),
                   'Parameters of follower_node.'),
]

SIM_ARGS = [
    LaunchArgument('checkpoint', ('dp_bringup', 'models/reach_image.ckpt'),
                   'Diffusion Policy checkpoint (dp_train output) run by policy_node.'),
    LaunchArgument('robot_config', ('dp_bringup', 'config/robots/embedded_arm.yaml'),
                   'Robot config: joint names, controller, limits (layered after the node params; '
                   'its sim_node section, if any, picks the simulated arm).'),
    LaunchArgument('sim_params_file', ('dp_bringup', 'config/sim.yaml'),
                   'Parameters of sim_node (physics, camera, task).'),
    *NODE_PARAMS_ARGS,
    LaunchArgument('use_sim_time', 'true', 'All nodes follow /clock published by sim_node.'),
    LaunchArgument('output_mode', 'forward_command',
                   "follower output: 'forward_command' (forward_position_controller/commands) or "
                   "'joint_trajectory' (joint_trajectory_controller/joint_trajectory)."),
]


def sim_nodes(a: dict[str, str]) -> list[NodeSpec]:
    sim_time = _bool(a['use_sim_time'])
    return [
        NodeSpec('dp_sim', 'sim_node', 'sim_node',
                 params_files=[a['sim_params_file'], a['robot_config']],
                 parameters={'use_sim_time': sim_time, 'publish_clock': sim_time}),
        NodeSpec('dp_policy_node', 'policy_node', 'policy_node',
                 params_files=[a['policy_params_file'], a['robot_config']],
                 parameters={'checkpoint': a['checkpoint'], 'use_sim_time': sim_time}),
        NodeSpec('dp_controller', 'follower_node', 'follower_node',
                 params_files=[a['follower_params_file'], a['robot_config']],
                 parameters={'output_mode': a['output_mode'], 'use_sim_time': sim_time},
                 remappings=[('trajectory', '/policy_node/trajectory')]),
    ]


REAL_ARM_ARGS = [
    LaunchArgument('robot', 'ur5e',
                   'Robot config name in config/robots/ (ur5e, franka_fr3, embedded_arm).'),
    LaunchArgument('checkpoint', None,
                   'Diffusion Policy checkpoint trained for this robot and cameras.'),
    *NODE_PARAMS_ARGS,
    LaunchArgument('use_sim_time', 'false', 'Follow /clock (bag replay).'),
]


def real_arm_nodes(a: dict[str, str]) -> list[NodeSpec]:
    robot_config = share_file('dp_bringup', 'config', 'robots', a['robot'] + '.yaml')
    sim_time = _bool(a['use_sim_time'])
    return [
        NodeSpec('dp_policy_node', 'policy_node', 'policy_node',
                 params_files=[a['policy_params_file'], robot_config],
                 parameters={'checkpoint': a['checkpoint'], 'use_sim_time': sim_time}),
        NodeSpec('dp_controller', 'follower_node', 'follower_node',
                 params_files=[a['follower_params_file'], robot_config],
                 parameters={'use_sim_time': sim_time},
                 remappings=[('trajectory', '/policy_node/trajectory')]),
    ]


GRAPHS = {
    'sim.launch.py': Graph(SIM_ARGS, sim_nodes),
    'real_arm.launch.py': Graph(REAL_ARM_ARGS, real_arm_nodes),
}
