"""dp_launch's process starter: command lines as `ros2 launch` would build them, and process
management (output capture, a required process dying stops the group, Ctrl-C stops everyone)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from dp_bringup import graphs, starter
from dp_bringup.cli import parse_launch_args
from dp_bringup.starter import NodeSpec, ProcessGroup

ROOT = Path(__file__).resolve().parents[3]
ECHO = ROOT / 'test' / 'nodes' / 'chunk_echo.py'


class ScriptSpec(NodeSpec):
    """A NodeSpec whose executable is a script file (the test's own ROS node process)."""

    def __init__(self, name: str, script: Path, **kw):
        super().__init__('dp_bringup', 'dp_launch', name, **kw)
        self.script = script

    def command(self):
        cmd = super().command()
        return [sys.executable, str(self.script)] + cmd[1:]


def test_command_line_matches_ros2_launch_conventions(monkeypatch):
    monkeypatch.setattr(starter, 'find_executable', lambda p, e: Path(f'/ws/lib/{p}/{e}'))
    spec = NodeSpec('dp_controller', 'follower_node', 'follower_node', namespace='robot1',
                    params_files=['a.yaml', 'b.yaml'],
                    parameters={'use_sim_time': True, 'rate_hz': 500.0, 'names': ['j1', 'j2'],
                                'mode': 'forward_command'},
                    remappings=[('trajectory', '/policy_node/trajectory')])
    assert spec.command() == [
        '/ws/lib/dp_controller/follower_node', '--ros-args', '-r', '__node:=follower_node',
        '-r', '__ns:=/robot1', '--params-file', 'a.yaml', '--params-file', 'b.yaml',
        '-p', 'use_sim_time:=true', '-p', 'rate_hz:=500.0', '-p', 'names:=[j1, j2]',
        '-p', 'mode:=forward_command', '-r', 'trajectory:=/policy_node/trajectory']


def test_launch_arguments_are_checked():
    assert parse_launch_args(['a:=1', 'b:=x:=y']) == {'a': '1', 'b': 'x:=y'}
    with pytest.raises(SystemExit, match='name:=value'):
        parse_launch_args(['oops'])
    with pytest.raises(SystemExit, match='unknown launch arguments'):
        graphs.GRAPHS['sim.launch.py'].build({'no_such_argument': '1'})
    with pytest.raises(SystemExit, match='checkpoint.*required'):
        graphs.GRAPHS['real_arm.launch.py'].build({})


def test_group_captures_output_and_stops_everyone(tmp_path):
    specs = [ScriptSpec('echo_a', ECHO), ScriptSpec('echo_b', ECHO, namespace='second')]
    group = ProcessGroup(specs, log_dir=tmp_path, quiet=True)
    group.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            logs = [(tmp_path / f'{s.name}.log') for s in specs]
            if all(p.exists() and 'ready' in p.read_text() for p in logs):
                break
            time.sleep(0.2)
        else:
            pytest.fail('nodes did not start: ' + repr([p.read_text() for p in logs if p.exists()]))
        assert group.wait(timeout_s=0.5) is None  # nobody died
        group.kill('echo_a')
        assert group.wait(timeout_s=20) == 'echo_a'
    finally:
        codes = group.stop(grace_s=10)
    assert codes['echo_a'] != 0
    assert codes['echo_b'] == 0, 'SIGINT must stop a node cleanly'
