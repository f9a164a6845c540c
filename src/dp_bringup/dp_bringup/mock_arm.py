"""The embedded arm on the real ros2_control: controller_manager with mock hardware.

What it is: `dp_mock_arm` starts the real `ros2_control_node` (controller_manager) with the
embedded arm's URDF, whose `<ros2_control>` block gets ros2_control's own mock hardware
(`mock_components/GenericSystem`, position commands, position + velocity states computed from
them), publishes that URDF on `/robot_description` (latched, as robot_state_publisher does; the
Jazzy+ controller manager reads it from there), and loads the controllers of
`dp_sim/config/mock_controllers.yaml` with controller_manager's own `spawner`:
joint_state_broadcaster and one of forward_position_controller / joint_trajectory_controller
active, the other configured and inactive (both claim the position command interfaces). It
prints `dp_mock_arm: ready` when they are, and runs until SIGINT/SIGTERM.

    dp_mock_arm                                    # forward_position_controller active
    dp_mock_arm --active joint_trajectory_controller

The follower drives it as it would drive a real arm (`follower_node` with the embedded arm's
robot config). Used by the integration tests (test/test_graph_ros2_control.py) and
bench/bench_controllers.py.

Where ros2_control comes from: a sourced ROS 2 with ros2_control (apt), or the build of
`make ros2-control` (scripts/ros2_control/build.sh), whose prefix scripts/env.sh sources. The C++
processes of that build run against the ROS 2 wheels of .venv: they need the wheels' library
folders on LD_LIBRARY_PATH and libpython preloaded (the wheels' message libraries leave the
Python C API to the process); `Installation.process_env` adds both, and nothing for an apt ROS.

What it is not: an imitation of any part of ros2_control. Every controller, the controller
manager and the hardware plugin are the real C++ ones; this module only finds them, writes the
URDF variant and starts processes.
"""
from __future__ import annotations

import argparse
import glob
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

CONTROLLER_MANAGER = '/controller_manager'
BUILT_MARKER = 'share/dp_ros2_control/built_against_wheels'   # written by build.sh
FORWARD = 'forward_position_controller'
TRAJECTORY = 'joint_trajectory_controller'
BROADCASTER = 'joint_state_broadcaster'


# ------------------------------------------------------------------ installation
@dataclass
class Installation:
    prefix: Path          # install prefix of controller_manager
    from_wheels: bool     # built by scripts/ros2_control/build.sh against .venv's wheels

    @property
    def ros2_control_node(self) -> Path:
        return self.prefix / 'lib' / 'controller_manager' / 'ros2_control_node'

    def process_env(self, base: Optional[dict] = None) -> dict:
        """Environment for a C++ process of this installation (ros2_control_node)."""
        env = dict(os.environ if base is None else base)
        if not self.from_wheels:
            return env
        venv = Path(sys.prefix)
        site = Path(sysconfig.get_paths()['purelib'])
        libs = [str(self.prefix / 'lib'), str(venv / 'lib')] + sorted(
            glob.glob(str(site / '*.libs')))
        old = env.get('LD_LIBRARY_PATH', '')
        env['LD_LIBRARY_PATH'] = ':'.join(libs + ([old] if old else []))
        libpython = Path(sysconfig.get_config_var('LIBDIR') or '') / (
            sysconfig.get_config_var('INSTSONAME') or '')
        if libpython.is_file():
            env['LD_PRELOAD'] = ' '.join(filter(None, [str(libpython), env.get('LD_PRELOAD', '')]))
        return env

    def spawner_command(self, *args: str) -> list[str]:
        """controller_manager's spawner (a Python module of the installation)."""
        return [sys.executable, '-m', 'controller_manager.spawner', *args]


def find_installation() -> Optional[Installation]:
    """The ros2_control on AMENT_PREFIX_PATH that has everything the mock arm needs, or None."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    needed = ('controller_manager', 'joint_trajectory_controller', 'forward_command_controller',
              'joint_state_broadcaster', 'hardware_interface', 'control_msgs',
              'controller_manager_msgs')
    try:
        found = {p: Path(get_package_prefix(p)) for p in needed}
    except PackageNotFoundError:
        return None
    prefix = found['controller_manager']
    inst = Installation(prefix, (prefix / BUILT_MARKER).exists())
    if not inst.ros2_control_node.is_file():
        return None
    import importlib
    try:   # the Python interfaces (the test and the follower use them)
        cm_msgs = importlib.import_module('controller_manager_msgs.msg')
        importlib.import_module('control_msgs.msg')
    except ImportError:
        return None
    if not hasattr(cm_msgs, 'ControllerManagerActivity'):
        return None   # Humble: no ~/activity topic (the follower cannot see switches)
    return inst


def missing_reason() -> str:
    """Why find_installation() is None, for skip messages."""
    return ('the real ros2_control (Jazzy or newer) is not available: run `make ros2-control` '
            '(builds it from ../shared/ros2_control_src; scripts/env.sh then sources it), or '
            'source an apt ROS 2 with ros-$ROS_DISTRO-ros2-control and '
            'ros-$ROS_DISTRO-ros2-controllers')


# ------------------------------------------------------------------ description and config
def share_dir(package: str) -> Path:
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory(package))


def default_urdf() -> Path:
    return share_dir('dp_sim') / 'description' / 'arm.urdf'


def default_controllers_file() -> Path:
    return share_dir('dp_sim') / 'config' / 'mock_controllers.yaml'


def mock_hardware_urdf(urdf_text: str, calculate_dynamics: bool = True) -> str:
    """The URDF with every `<ros2_control>` system on mock_components/GenericSystem.

    Joints, interfaces, limits and initial values stay as written (the same file drives Gazebo
    through gz_ros2_control). `calculate_dynamics`: the mock computes the velocity state from
    consecutive position commands (else it stays at its initial value, 0).
    """
    root = ET.fromstring(urdf_text)
    systems = root.findall('ros2_control')
    if not systems:
        raise ValueError('the URDF has no <ros2_control> block')
    for system in systems:
        hardware = system.find('hardware')
        if hardware is None:
            hardware = ET.SubElement(system, 'hardware')
        for child in list(hardware):
            hardware.remove(child)
        ET.SubElement(hardware, 'plugin').text = 'mock_components/GenericSystem'
        param = ET.SubElement(hardware, 'param', name='calculate_dynamics')
        param.text = 'true' if calculate_dynamics else 'false'
    for gazebo in root.findall('gazebo'):
        root.remove(gazebo)
    return ET.tostring(root, encoding='unicode')


def initial_positions(urdf_text: str) -> dict[str, float]:
    """Initial position state of each ros2_control joint (the mock arm starts there)."""
    out = {}
    for joint in ET.fromstring(urdf_text).iter('joint'):
        for state in joint.findall('state_interface'):
            if state.get('name') == 'position':
                for p in state.findall('param'):
                    if p.get('name') == 'initial_value':
                        out[joint.get('name')] = float(p.text)
    return out


# ------------------------------------------------------------------ the process group
def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux), so that a killed test or
    dp_mock_arm leaves no controller manager running at 500 Hz behind."""
    try:
        import ctypes
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class MockArm:
    """ros2_control_node + robot description + spawned controllers (see the module docstring).

    The robot description is published by an rclpy node of the caller's process (`node`), which
    must be spun by the caller (or by `run()` in the `dp_mock_arm` command).
    """

    def __init__(self, node, installation: Installation, *, active: str = FORWARD,
                 urdf: Optional[Path] = None, controllers_file: Optional[Path] = None,
                 log_path: Optional[Path] = None, extra_ros_args: Sequence[str] = ()):
        if active not in (FORWARD, TRAJECTORY):
            raise ValueError(f'active must be {FORWARD} or {TRAJECTORY}, got {active!r}')
        self.node = node
        self.inst = installation
        self.active = active
        self.inactive = TRAJECTORY if active == FORWARD else FORWARD
        self.urdf_text = mock_hardware_urdf(Path(urdf or default_urdf()).read_text())
        self.controllers_file = Path(controllers_file or default_controllers_file())
        self.log_path = log_path
        self.extra_ros_args = list(extra_ros_args)
        self.proc: Optional[subprocess.Popen] = None
        self._log = None
        self._description_pub = None

    def start(self) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._description_pub = self.node.create_publisher(String, '/robot_description', latched)
        self._description_pub.publish(String(data=self.urdf_text))
        cmd = [str(self.inst.ros2_control_node), '--ros-args',
               '--params-file', str(self.controllers_file), *self.extra_ros_args]
        self._log = open(self.log_path, 'w') if self.log_path else None   # None: inherit
        self.proc = subprocess.Popen(cmd, env=self.inst.process_env(), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)

    def spawn(self, timeout_s: float = 60.0) -> None:
        """Load the controllers: broadcaster + `active` active, the other inactive."""
        for args in ([BROADCASTER, self.active], [self.inactive, '--inactive']):
            cmd = self.inst.spawner_command(*args, '-c', CONTROLLER_MANAGER,
                                            '--controller-manager-timeout', str(timeout_s))
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 30)
            if out.returncode != 0:
                raise RuntimeError(f'spawner {" ".join(args)} failed ({out.returncode}):\n'
                                   f'{out.stdout[-2000:]}\n{out.stderr[-2000:]}')
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f'ros2_control_node exited ({self.proc.returncode}); '
                                   f'log: {self.log_path}')

    def stop(self, timeout_s: float = 10.0) -> Optional[int]:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        if self._description_pub is not None:
            self.node.destroy_publisher(self._description_pub)
            self._description_pub = None
        return self.proc.returncode


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='dp_mock_arm', description=__doc__.split('\n\n')[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--active', default=FORWARD, choices=(FORWARD, TRAJECTORY),
                        help='controller to activate (the other is loaded inactive)')
    parser.add_argument('--urdf', type=Path, help='URDF (default: dp_sim description/arm.urdf)')
    parser.add_argument('--controllers', type=Path,
                        help='controller_manager parameters (default: dp_sim '
                             'config/mock_controllers.yaml)')
    parser.add_argument('--log', type=Path, help="ros2_control_node's output (default: here)")
    args = parser.parse_args(argv)
    inst = find_installation()
    if inst is None:
        print(f'dp_mock_arm: {missing_reason()}', file=sys.stderr)
        return 2
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    rclpy.init()
    node = rclpy.create_node('dp_mock_arm')
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin():
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    spin = threading.Thread(target=spin, daemon=True)
    spin.start()
    arm = MockArm(node, inst, active=args.active, urdf=args.urdf,
                  controllers_file=args.controllers, log_path=args.log)
    code = 0
    try:
        arm.start()
        arm.spawn()
        print(f'dp_mock_arm: ready ({BROADCASTER}, {arm.active} active; {arm.inactive} inactive)',
              flush=True)
        while arm.proc.poll() is None and rclpy.ok():   # rclpy's SIGINT/SIGTERM handler
            time.sleep(0.2)                                # shuts its context down
        code = arm.proc.returncode or 0
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError as exc:
        print(f'dp_mock_arm: {exc}', file=sys.stderr)
        code = 1
    finally:
        arm.stop()
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
