"""The library imports without ROS: every module of dp_policy with rclpy blocked (an import of it
raises), as in a notebook or a training job on a machine without ROS 2."""
import pkgutil
import subprocess
import sys

import dp_policy


def library_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(dp_policy.__path__, 'dp_policy.'))


def test_every_module_imports_with_rclpy_blocked():
    modules = library_modules()
    assert {'dp_policy.policy', 'dp_policy.checkpoint', 'dp_policy.model.unet',
            'dp_policy.sampling.schedulers', 'dp_policy.data.dataset',
            'dp_policy.training.trainer', 'dp_policy.training.cli'} <= set(modules)
    code = ('import sys\n'
            "for name in ('rclpy', 'rclpy.node', 'dp_policy_node'):\n"
            '    sys.modules[name] = None   # import rclpy -> ImportError\n'
            + ''.join(f'import {m}\n' for m in modules)
            + "assert not [m for m in sys.modules if m.startswith('rclpy') and sys.modules[m]]\n"
            + "print('ok')\n")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == 'ok'
