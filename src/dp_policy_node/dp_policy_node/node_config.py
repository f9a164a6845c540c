"""Parameters of policy_node: one table (name, default, description) and a validated dataclass.

ROS-free: `PolicyNodeConfig.from_params(get)` builds the config from any getter (the node passes
one that reads its declared ROS parameters; tests pass a dict's `get`). The node declares every
entry of `PARAMETERS` with its description, so `ros2 param describe` and config/policy_node.yaml
tell the same story (a test keeps the YAML and this table in step).

Not here: anything that needs the checkpoint (camera count, joint count); the node checks those
in on_configure with `check_against_checkpoint`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ['PARAMETERS', 'PolicyNodeConfig', 'ConfigError', 'guidance_for', 'resolve_path', 'robot_topic',
           'output_topic']


class ConfigError(ValueError):
    """A parameter value that cannot work; the message names the parameter."""


# name -> (default, description). A list default of [] is declared as a string array.
PARAMETERS: dict[str, tuple[Any, str]] = {
    'checkpoint': ('', 'Path of the checkpoint file (dp_train output). Required; a missing or '
                       'incompatible file makes on_configure fail and the node stays unconfigured.'),
    'backend': ('auto', "Inference backend: 'auto' (fastest measured at warm-up per batch size), "
                        "'torch', 'onnxruntime' (CPU only) or 'cuda-graph' (the whole DDIM loop "
                        "captured in one CUDA graph per batch size; needs device cuda)."),
    'device': ('cpu', "torch device: 'cpu', 'cuda' or 'cuda:N'."),
    'num_threads': (1, 'CPU threads for inference (torch intra-op and ONNX Runtime); 0 = the '
                       'library default (all cores). Keep it low beside a simulator.'),
    'policy_rate_hz': (10.0, 'Chunks per second per robot: the tick rate of the inference loop '
                             '(trigger=timer), or the grid of observation stamps that chunks '
                             'follow (trigger=observation).'),
    'trigger': ('observation', "'observation': infer as soon as a new complete observation is due, "
                               "on a grid of 1/policy_rate_hz in observation time (header stamps; "
                               "lowest latency, no waiting for a tick; robots due within half a "
                               "period join the batch of a due one); 'timer': the inference thread "
                               "ticks at policy_rate_hz on the node's ROS clock (simulated time under "
                               "use_sim_time) and uses the newest complete observation (all robots "
                               "in one batch per tick)."),
    'num_inference_steps': (0, 'Denoising (DDIM) steps per chunk; 0 = the checkpoint default.'),
    'num_samples': (1, 'Samples drawn per observation; the one most coherent with the previous '
                       'chunk is published.'),
    'joint_states_topic': ('joint_states', 'sensor_msgs/JointState input, relative to each robot '
                                           'namespace (sensor-data QoS).'),
    'joint_names': ([], "Names of the checkpoint's joints as they appear in joint_states, in the "
                        "checkpoint's order; empty = the checkpoint's own joint names. Also the "
                        'names in the published trajectory.'),
    'camera_topics': ([], "One image topic per checkpoint camera, in the checkpoint's camera "
                          'order, relative to each robot namespace; empty = the camera names.'),
    'camera_transports': ([], "Per camera topic: 'raw' (sensor_msgs/Image) or 'compressed' "
                              "(sensor_msgs/CompressedImage); empty = 'compressed' for topics "
                              "ending in /compressed, else 'raw'."),
    'robot_namespaces': ([''], "Robots served by this node, batched together; '' = the node's own "
                               'namespace. Inputs are <ns>/<topic>; outputs <ns>/<node name>/...'),
    'max_observation_age_s': (0.5, 'No chunk when the newest complete observation is older than '
                                   'this against the node clock (status: stale:<topic>).'),
    'alignment_tolerance_s': (0.0, 'Largest stamp distance between a grid time and the sample '
                                   'used for it; 0 = half the policy dt.'),
    'max_future_stamp_s': (0.1, 'Messages stamped further than this ahead of the node clock are '
                                'rejected (future_stamp).'),
    'resize_images': (True, 'Images of another size than the checkpoint\'s are resized (true) or '
                            'rejected as wrong_image_size (false).'),
    'max_images_per_camera': (16, 'Undecoded images kept per camera (bounds memory under a '
                                  'flood; images are decoded only when used).'),
    'clock_jump_threshold_s': (0.25, 'A node clock going backwards by more than this (bag replay '
                                     'restart, sim reset) clears all observation histories.'),
    'trajectory_topic': ('~/trajectory', 'trajectory_msgs/JointTrajectory output (reliable, depth '
                                         '1): points from the action for the observation stamp on.'),
    'action_chunk_topic': ('~/action_chunk', 'dp_msgs/ActionChunk output (reliable, depth 1): the '
                                             'whole horizon and its metadata.'),
    'status_topic': ('~/status', 'dp_msgs/PolicyStatus output (transient local, depth 1).'),
    'status_rate_hz': (1.0, 'PolicyStatus publishing rate.'),
    'publish_velocities': (False, 'Add finite-difference velocities to the trajectory points.'),
    'guidance': (False, 'Safe sampling (dp_policy.guidance): each denoising step moves the '
                        'predicted chunk away from the joint limits, the velocity limits and the '
                        'obstacles (log-barrier gradients through the FK of '
                        'robot_description_file); of num_samples samples the safest, most coherent '
                        'is published, and a chunk whose samples all break a hard limit is not '
                        'published (skipped: gated). Guided chunks are sampled one denoising step at '
                        'a time (ONNX Runtime on the CPU, else eager torch).'),
    'robot_description_file': ('', 'URDF of the robot (guidance): the chain to tip_link, its '
                                   'position and velocity limits and collision geometry. A path, '
                                   'or package://<package>/<path in its share folder>.'),
    'tip_link': ('tool0', 'Guidance: the last link of the chain (URDF link name).'),
    'obstacles': ([], "Guidance: obstacles in the URDF's root frame (m): 'sphere x y z r', "
                      "'capsule ax ay az bx by bz r', 'box cx cy cz hx hy hz [roll pitch yaw]' "
                      '(h: half sizes).'),
    'guidance_limit_margin_rad': (0.02, 'Guidance: kept free inside each joint limit (rad).'),
    'guidance_obstacle_margin_m': (0.01, 'Guidance: clearance kept to every obstacle (m); a chunk '
                                         'closer than this is gated.'),
    'warmup': (True, 'Run the network once per batch size in on_configure (first chunk without '
                     'the one-off start-up cost; chooses the backend in auto).'),
    'autostart': (True, 'Configure and activate on start (for starters without a lifecycle '
                        'manager); false = wait for lifecycle transitions.'),
}


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
    guidance: bool = False
    robot_description_file: str = ''
    tip_link: str = 'tool0'
    obstacles: list[str] = field(default_factory=list)
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

    def check_against_checkpoint(self, joint_names: list[str], camera_names: list[str]
                                 ) -> tuple[list[str], list[str]]:
        """(input joint names, camera topics) for a checkpoint; ConfigError when they do not fit."""
        joints = list(self.joint_names) or list(joint_names)
        if len(joints) != len(joint_names):
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


def guidance_for(cfg: PolicyNodeConfig, joints: list[str], dt_s: float):
    """DiffusionPolicy.set_guidance's arguments from the guidance parameters (ConfigError says
    what does not fit: the URDF, its chain against the policy's joints, an obstacle)."""
    from dp_policy.guidance.setup import guidance_from_urdf
    try:
        return guidance_from_urdf(resolve_path(cfg.robot_description_file), cfg.tip_link, joints,
                                  dt_s, cfg.obstacles, cfg.guidance_limit_margin_rad,
                                  cfg.guidance_obstacle_margin_m)
    except (OSError, ValueError) as err:
        raise ConfigError(f'guidance: {err}') from err


def resolve_path(path: str) -> str:
    """A file path, with package://<package>/<rest> resolved to the package's share folder."""
    if not path.startswith('package://'):
        return path
    package, _, rest = path[len('package://'):].partition('/')
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    try:
        return str(Path(get_package_share_directory(package)) / rest)
    except PackageNotFoundError:
        raise ConfigError(f'{path}: package {package!r} is not installed') from None


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

