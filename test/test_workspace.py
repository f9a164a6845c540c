"""The workspace stays a normal colcon workspace: it must build unchanged on an apt-installed ROS 2.

No package file may name the venv or this machine's paths, every package has a format-3
manifest with a build type, and the interfaces are what the other packages rely on.
"""
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for p in (ROOT / 'src').glob('*/package.xml'))
PACKAGE_FILES = ('package.xml', 'setup.py', 'setup.cfg', 'CMakeLists.txt')


def test_expected_packages_exist():
    names = {p.name for p in PACKAGES}
    assert {'dp_msgs', 'dp_policy', 'dp_policy_node', 'dp_controller', 'dp_common'} <= names


def imported_packages(files) -> set:
    """The dp_* packages these Python files import (any import statement, also inside functions)."""
    import ast
    out = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                out |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                out.add(node.module.split('.')[0])
    return {m for m in out if m.startswith('dp_')}


@pytest.mark.parametrize('pkg', [p for p in PACKAGES if (p / 'setup.py').exists()],
                         ids=lambda p: p.name)
def test_imports_follow_the_declared_dependencies(pkg):
    """A package's code imports only the dp_* packages its manifest names (exec_depend), its
    tests those plus its test_depend: the dependency graph the manifests draw is the real one
    (dp_sim needs no policy package; dp_policy no ROS node package)."""
    root = ET.parse(pkg / 'package.xml').getroot()
    run = {e.text for e in root.findall('exec_depend')} | {pkg.name}
    test = run | {e.text for e in root.findall('test_depend')}
    code = [f for f in (pkg / pkg.name).rglob('*.py')]
    tests = [f for f in (pkg / 'test').rglob('*.py')] if (pkg / 'test').is_dir() else []
    assert imported_packages(code) <= run, imported_packages(code) - run
    assert imported_packages(tests) <= test, imported_packages(tests) - test


def test_simulation_and_library_do_not_need_the_policy_node():
    for name in ('dp_sim', 'dp_policy', 'dp_common'):
        files = list((ROOT / 'src' / name / name).rglob('*.py'))
        assert 'dp_policy_node' not in imported_packages(files), name


@pytest.mark.parametrize('pkg', PACKAGES, ids=lambda p: p.name)
def test_manifest_is_format3_with_build_type(pkg):
    root = ET.parse(pkg / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == pkg.name
    build_type = root.find('export/build_type').text
    assert build_type == ('ament_cmake' if (pkg / 'CMakeLists.txt').exists() else 'ament_python')
    if build_type == 'ament_python':
        assert (pkg / 'resource' / pkg.name).exists()
        assert f'$base/lib/{pkg.name}' in (pkg / 'setup.cfg').read_text()


def test_no_machine_paths_in_package_files():
    bad = re.compile(r'\.venv|/work/|/root/|site-packages|/opt/python')
    offenders = []
    for pkg in PACKAGES:
        for f in pkg.rglob('*'):
            if f.is_file() and (f.name in PACKAGE_FILES or f.suffix in ('.cmake', '.msg', '.srv')):
                for i, line in enumerate(f.read_text().splitlines(), 1):
                    if bad.search(line) and not line.lstrip().startswith('#'):
                        offenders.append(f'{f.relative_to(ROOT)}:{i}: {line.strip()}')
    assert not offenders, 'machine-specific paths in package files:\n' + '\n'.join(offenders)


def test_wheel_include_fix_is_guarded():
    """The CMake workaround acts only on include directories that do not exist."""
    text = (ROOT / 'src/dp_msgs/cmake/fix_wheel_include_dirs.cmake').read_text()
    assert 'NOT EXISTS' in text and 'return()' in text


def test_wheel_include_fix_is_noop_when_paths_exist(tmp_path):
    """Run the CMake function on imported targets whose directories exist: nothing may change."""
    inc = tmp_path / 'inc'
    inc.mkdir()
    (tmp_path / 'CMakeLists.txt').write_text(f'''
cmake_minimum_required(VERSION 3.16)
project(probe NONE)
add_library(ok INTERFACE IMPORTED)
set_target_properties(ok PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "{inc}")
include({ROOT}/src/dp_msgs/cmake/fix_wheel_include_dirs.cmake)
dp_msgs_fix_wheel_include_dirs()
get_target_property(_d ok INTERFACE_INCLUDE_DIRECTORIES)
message(STATUS "RESULT=${{_d}}")
''')
    out = subprocess.run(['cmake', '-S', str(tmp_path), '-B', str(tmp_path / 'b')],
                         capture_output=True, text=True, check=True).stdout
    assert f'RESULT={inc}' in out
    assert 'rewrote' not in out


def test_interfaces_import_with_fields():
    pytest.importorskip('rclpy')
    from dp_msgs.msg import ActionChunk, FollowerStatus, PolicyStatus, TaskStatus
    from dp_msgs.srv import ResetEpisode, ResetHistory, SetEnabled

    chunk = ActionChunk()
    for field in ('header', 'sequence', 'robot_namespace', 'trajectory', 'dt_s',
                  'first_action_index', 'n_action_steps', 'inference_latency_s',
                  'num_inference_steps', 'num_samples', 'chosen_sample', 'scheduler'):
        assert hasattr(chunk, field), field
    assert FollowerStatus.STATE_HOLDING == 2
    assert hasattr(PolicyStatus(), 'rejected') and hasattr(TaskStatus(), 'obstacle_contact')
    assert hasattr(ResetHistory.Request(), 'robot_namespace')
    assert hasattr(SetEnabled.Request(), 'enabled')
    assert hasattr(ResetEpisode.Response(), 'target')
