"""Parameters of policy_node: one table (name, default, description; parameters/policy_node.yaml)
and a validated dataclass.

ROS-free: `PolicyNodeConfig.from_params(get)` builds the config from any getter (the node passes
one that reads its declared ROS parameters; tests pass a dict's `get`). The node declares every
entry of `PARAMETERS` with its description, so `ros2 param describe` and config/policy_node.yaml
tell the same story (a test keeps the YAML and this table in step).

Not here: anything that needs the checkpoint (camera count, joint count); the node checks those
in on_configure with `check_against_checkpoint`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import dp_common.params

from dp_common.params import load_parameter_table

__all__ = ['PARAMETERS', 'PolicyNodeConfig', 'ConfigError', 'guidance_for', 'resolve_path', 'robot_topic',
           'output_topic']


class ConfigError(ValueError):
    """A parameter value that cannot work; the message names the parameter."""


# name -> (default, description), from parameters/policy_node.yaml. A list default of [] is
# declared as a string array.
PARAMETERS: dict[str, tuple[Any, str]] = load_parameter_table('dp_policy_node', 'policy_node')


EXECUTIONS = ('', 'receding_horizon', 'latest', 'temporal_ensemble', 'rtc')


@dataclass
class PolicyNodeConfig:
    """The node's parameters, validated (units in the names: seconds, hertz)."""

    checkpoint: str = ''
    backend: str = 'auto'
    device: str = 'cpu'
    num_threads: int = 1
    policy_rate_hz: float = 10.0
    trigger: str = 'observation'
    num_inference_steps: int = 0
    num_samples: int = 1
    joint_states_topic: str = 'joint_states'
    joint_names: list[str] = field(default_factory=list)
    camera_topics: list[str] = field(default_factory=list)
    camera_transports: list[str] = field(default_factory=list)
    robot_namespaces: list[str] = field(default_factory=lambda: [''])
    max_observation_age_s: float = 0.5
    alignment_tolerance_s: float = 0.0
    max_future_stamp_s: float = 0.1
    resize_images: bool = True
    max_images_per_camera: int = 16
    clock_jump_threshold_s: float = 0.25
    trajectory_topic: str = '~/trajectory'
    action_chunk_topic: str = '~/action_chunk'
    status_topic: str = '~/status'
    status_rate_hz: float = 1.0
    publish_velocities: bool = False
    execution: str = ''
    inference_delay_s: float = 0.0
    added_delay_s: float = 0.0
    guidance: bool = False
    robot_description_file: str = ''
    tip_link: str = 'tool0'
    obstacles: list[str] = field(default_factory=list)
    obstacles_topic: str = ''
    obstacles_required: bool = True
    guidance_steps: int = 1
    guidance_limit_margin_rad: float = 0.02
    guidance_obstacle_margin_m: float = 0.01
    warmup: bool = True
    autostart: bool = True

    def __post_init__(self) -> None:
        if self.backend not in ('auto', 'torch', 'onnxruntime', 'cuda-graph'):
            raise ConfigError("backend must be 'auto', 'torch', 'onnxruntime' or 'cuda-graph', got "
                              f'{self.backend!r}')
        if not (self.device == 'cpu' or self.device == 'cuda' or
                (self.device.startswith('cuda:') and self.device[5:].isdigit())):
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.trigger not in ('observation', 'timer'):
            raise ConfigError(f"trigger must be 'observation' or 'timer', got {self.trigger!r}")
        for name in ('policy_rate_hz', 'max_observation_age_s', 'status_rate_hz'):
            if not getattr(self, name) > 0:
                raise ConfigError(f'{name} must be > 0, got {getattr(self, name)}')
        for name in ('alignment_tolerance_s', 'max_future_stamp_s', 'clock_jump_threshold_s',
                     'num_inference_steps', 'num_threads'):
            if getattr(self, name) < 0:
                raise ConfigError(f'{name} must be >= 0, got {getattr(self, name)}')
        if self.num_samples < 1:
            raise ConfigError(f'num_samples must be >= 1, got {self.num_samples}')
        if self.max_images_per_camera < 2:
            raise ConfigError(f'max_images_per_camera must be >= 2, got {self.max_images_per_camera}')
        for t in self.camera_transports:
            if t not in ('raw', 'compressed'):
                raise ConfigError(f"camera_transports entries must be 'raw' or 'compressed', got {t!r}")
        if self.camera_transports and len(self.camera_transports) != len(self.camera_topics):
            raise ConfigError(f'camera_transports has {len(self.camera_transports)} entries for '
                              f'{len(self.camera_topics)} camera_topics')
        self.robot_namespaces = [ns.strip('/') for ns in self.robot_namespaces] or ['']
        if len(set(self.robot_namespaces)) != len(self.robot_namespaces):
            raise ConfigError(f'robot_namespaces has duplicates: {self.robot_namespaces}')
        if len(self.joint_names) != len(set(self.joint_names)):
            raise ConfigError(f'joint_names has duplicates: {self.joint_names}')
        if not self.joint_states_topic:
            raise ConfigError('joint_states_topic must not be empty')
        self.obstacles = [o for o in self.obstacles if o.strip()]    # [''] in YAML: none
        if self.guidance and not self.robot_description_file:
            raise ConfigError('guidance needs robot_description_file (the URDF)')
        if self.guidance_limit_margin_rad < 0 or self.guidance_obstacle_margin_m < 0:
            raise ConfigError('guidance margins must be >= 0')
        if self.guidance_steps < 0:
            raise ConfigError('guidance_steps must be >= 0 (0: select and gate only)')
        for name in ('inference_delay_s', 'added_delay_s'):
            v = getattr(self, name)
            if not 0.0 <= v <= 5.0:
                raise ConfigError(f'{name} must be in [0, 5] s, got {v}')
        if 0.0 < self.inference_delay_s < self.added_delay_s:
            raise ConfigError(f'inference_delay_s ({self.inference_delay_s} s) is shorter than '
                              f'added_delay_s ({self.added_delay_s} s): every chunk would arrive '
                              'after its frozen actions')
        if self.execution not in EXECUTIONS:
            raise ConfigError(f'execution must be one of {EXECUTIONS}, got {self.execution!r}')

    @classmethod
    def from_params(cls, get: Callable[[str], Any]) -> 'PolicyNodeConfig':
        """Build from a getter name -> value (None = default)."""
        kwargs = {}
        for name, (default, _) in PARAMETERS.items():
            value = get(name)
            if value is None:
                continue
            if isinstance(default, list):
                value = [str(v) for v in value]
            elif isinstance(default, bool):
                value = bool(value)
            elif isinstance(default, int):
                value = int(value)
            elif isinstance(default, float):
                value = float(value)
            kwargs[name] = value
        return cls(**kwargs)

    def transports(self, topics: list[str]) -> list[str]:
        """The transport of each camera topic (explicit, or detected from the name)."""
        if self.camera_transports:
            return list(self.camera_transports)
        return ['compressed' if t.rstrip('/').endswith('/compressed') else 'raw' for t in topics]

    def check_against_checkpoint(self, joint_names: list[str], camera_names: list[str],
                                 action_space: Optional[dict] = None
                                 ) -> tuple[list[str], list[str]]:
        """(input joint names, camera topics) for a checkpoint; ConfigError when they do not fit.
        An end-effector checkpoint (`action_space`) takes any number of joints: the robot's,
        turned into the tip pose by end_effector_space."""
        joints = list(self.joint_names) or list(joint_names)
        if action_space is None and len(joints) != len(joint_names):
            raise ConfigError(f'joint_names has {len(joints)} names but the checkpoint has '
                              f'{len(joint_names)} joints {joint_names}')
        topics = list(self.camera_topics) or list(camera_names)
        if len(topics) != len(camera_names):
            raise ConfigError(f'camera_topics has {len(topics)} topics but the checkpoint has '
                              f'{len(camera_names)} cameras {camera_names} (same order)')
        if self.camera_transports and len(self.camera_transports) != len(topics):
            raise ConfigError(f'camera_transports has {len(self.camera_transports)} entries for '
                              f'{len(topics)} cameras')
        return joints, topics


def end_effector_space(cfg: PolicyNodeConfig, joints: list[str], action_space: dict):
    """The EndEffectorSpace of the robot this node drives, for an end-effector checkpoint:
    robot_description_file and tip_link where given (another arm than the one that recorded the
    demonstrations), else the checkpoint's URDF and tip, which must then move the same joints."""
    from dp_common.ee_space import EndEffectorSpace
    ckpt_tip = str(action_space.get('tip_link', 'tool0'))
    where = cfg.robot_description_file or "the checkpoint's URDF (robot_description_file unset)"
    try:
        if cfg.robot_description_file:
            space = EndEffectorSpace(resolve_path(cfg.robot_description_file),
                                     cfg.tip_link or ckpt_tip, joints)
        else:
            space = EndEffectorSpace(action_space['urdf'], ckpt_tip, joints)
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f'end-effector checkpoint: {where}: {err}') from err
    # The poses are in the URDF's root frame: the robot's must be the one the policy learnt in.
    trained = action_space.get('root_frame')
    if trained and space.root_frame != trained:
        raise ConfigError(f'end-effector checkpoint: {where}: root frame {space.root_frame!r}, '
                          f'the checkpoint\'s poses are in {trained!r}')
    return space


def robot_masks(cfg: PolicyNodeConfig, joints: list[str], meta) -> dict:
    """{camera: dp_common.robot_mask.RobotMask} for a checkpoint trained on images with the
    robot painted out (meta.robot_mask): this robot's links, from robot_description_file (else
    the URDF an end-effector checkpoint carries), painted out of the images before inference."""
    from dp_common.robot_mask import RobotMask
    urdf = resolve_path(cfg.robot_description_file) if cfg.robot_description_file else \
        (meta.action_space or {}).get('urdf')
    if not urdf:
        raise ConfigError('the checkpoint was trained on images with the robot painted out: set '
                          'robot_description_file (the URDF of this robot and its cameras)')
    try:
        return {cam: RobotMask.from_spec(urdf, joints, spec, meta.image_hw)
                for cam, spec in meta.robot_mask.items()}
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f'robot mask ({cfg.robot_description_file or "checkpoint URDF"}): '
                          f'{err}') from err


def guidance_for(cfg: PolicyNodeConfig, joints: list[str], dt_s: float):
    """DiffusionPolicy.set_guidance's arguments from the guidance parameters (ConfigError says
    what does not fit: the URDF, its chain against the policy's joints, an obstacle)."""
    from dp_policy.guidance.guide import GuidanceConfig
    from dp_policy.guidance.setup import guidance_from_urdf
    try:
        return guidance_from_urdf(resolve_path(cfg.robot_description_file), cfg.tip_link, joints,
                                  dt_s, cfg.obstacles, cfg.guidance_limit_margin_rad,
                                  cfg.guidance_obstacle_margin_m,
                                  GuidanceConfig(steps=max(1, cfg.guidance_steps),
                                                 final_iterations=20 if cfg.guidance_steps else 0),
                                  obstacles_expected=bool(cfg.obstacles_topic))
    except (OSError, ValueError) as err:
        raise ConfigError(f'guidance: {err}') from err


def resolve_path(path: str) -> str:
    """A file path, with package://<package>/<rest> resolved to the package's share folder."""
    try:
        return dp_common.params.resolve_path(path)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def robot_topic(ns: str, topic: str) -> str:
    """An input topic of robot `ns`: '<ns>/<topic>' (a topic with a leading '/' stays absolute
    for ns == '' only; for a robot it is put under the namespace too)."""
    if not ns:
        return topic
    return f'{ns}/{topic.lstrip("/")}'


def output_topic(ns: str, topic: str, node_name: str) -> str:
    """An output topic of robot `ns`: '~/x' -> '<ns>/<node_name>/x' (what a node of that name in
    namespace <ns> would publish), other names -> '<ns>/<topic>'. ns == '': unchanged."""
    if not ns:
        return topic
    if topic.startswith('~/'):
        return f'{ns}/{node_name}/{topic[2:]}'
    return f'{ns}/{topic.lstrip("/")}'

