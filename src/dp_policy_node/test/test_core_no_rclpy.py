"""The Diffusion Policy core imports without ROS: nothing in it pulls rclpy in."""
import subprocess
import sys

CORE = ['config', 'network', 'encoders', 'normalizer', 'schedulers', 'model', 'policy', 'checkpoint',
        'backends', 'episode', 'trainer', 'dataset', 'train_cli', 'cuda_graph']


def test_core_modules_do_not_import_rclpy():
    code = ('import sys\n'
            + ''.join(f'import dp_policy_node.{m}\n' for m in CORE)
            + "assert 'rclpy' not in sys.modules, sorted(m for m in sys.modules if m.startswith('rcl'))\n"
            + "print('ok')\n")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == 'ok'
