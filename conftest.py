"""Workspace-wide pytest setup: an isolated ROS domain per test session.

Each `make test` run picks its own ROS_DOMAIN_ID (from its PID) and restricts discovery to this
host, so that parallel runs on one machine (CI and a developer, say) never see each other's
topics. Child processes started by the tests inherit the environment.
"""
import os

if 'DP_TEST_DOMAIN_ID' not in os.environ:
    # 1..100: valid on Linux for the default port mapping; 0 is left to the user's own graph.
    os.environ['DP_TEST_DOMAIN_ID'] = str(1 + os.getpid() % 100)
os.environ['ROS_DOMAIN_ID'] = os.environ['DP_TEST_DOMAIN_ID']
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
os.environ.setdefault('PYTHONUNBUFFERED', '1')
os.environ.setdefault('MUJOCO_GL', 'egl')


def pytest_sessionstart(session):
    """Fast DDS's shared-memory segments of processes that died without cleaning up (the tests
    SIGKILL nodes on purpose) stay in /dev/shm, which is memory: 2.5 GB of them had gathered on
    this machine. Fast DDS's own cleaner removes those whose owner is gone, nothing in use."""
    import shutil
    import subprocess
    fastdds = shutil.which('fastdds')
    if fastdds:
        try:
            subprocess.run([fastdds, 'shm', 'clean'], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass                          # a clean-up only: the tests run without it


# ------------------------------------------------------------------ shared fixtures
import time  # noqa: E402

import pytest  # noqa: E402


class BackgroundGraph:
    """Nodes under test and the test's own `driver` node in a context of their own, spun by one
    SingleThreadedExecutor on a background thread (one thread, as each node's own main() spins
    it: rclpy's MultiThreadedExecutor kept two threads of the process busy, ros2/rclpy#1223, and
    callbacks ran seconds late on a loaded machine)."""

    def __init__(self, driver_name: str):
        import threading

        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.rclpy = rclpy
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        self.driver = rclpy.create_node(driver_name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.driver)
        self._nodes = [self.driver]
        self._closed = False
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def add(self, node):
        """Spin `node` too (created with context=graph.context); returns it. close() destroys
        the nodes added so (a node of the context not added keeps it, and its DDS participant,
        until garbage collection)."""
        self.executor.add_node(node)
        self._nodes.append(node)
        return node

    def start(self) -> None:
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - the context was shut down
            pass

    def close(self) -> None:
        """Stop spinning, destroy the nodes and the context (again: a no-op)."""
        if self._closed:
            return
        self._closed = True
        self.executor.shutdown(timeout_sec=5)
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        # the DDS participant goes with the context's last user: destroy the nodes, then the
        # context (a shut-down context's participant otherwise lives until garbage collection,
        # and the participants a module leaks crowd out the localhost discovery range)
        for node in reversed(self._nodes):
            try:
                node.destroy_node()
                # rclpy's LifecycleNode.destroy_node leaves its state machine (which holds the
                # node's handle, and so the context's participant) to garbage collection
                machine = getattr(node, '_state_machine', None)
                if machine is not None:
                    machine.destroy_when_not_in_use()
            except Exception:  # noqa: BLE001 - already destroyed by the test
                pass
        try:
            self.rclpy.try_shutdown(context=self.context)
            self.context.destroy()
        except Exception:  # noqa: BLE001 - the test destroyed it already
            pass


class RosTestNode(BackgroundGraph):
    """A test's rclpy node (`node`) in a context of its own, with the executor the test spins
    itself (spin_until, spin_for; no background thread)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.node = self.driver

    def spin_until(self, predicate, what: str = 'the condition', timeout: float = 60.0) -> None:
        """Spin until predicate() is true; fail naming `what` after `timeout` seconds."""
        end = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < end, f'timed out after {timeout} s waiting for {what}'
            self.executor.spin_once(timeout_sec=0.05)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)


@pytest.fixture
def background_graph():
    """`background_graph(driver_name)` -> a started-later BackgroundGraph; every one made is
    closed after the test, pass or fail."""
    pytest.importorskip('rclpy')
    made = []

    def make(driver_name: str = 'test_driver') -> BackgroundGraph:
        made.append(BackgroundGraph(driver_name))
        return made[-1]
    yield make
    for graph in reversed(made):
        graph.close()


@pytest.fixture
def ros_node(request):
    """`ros_node.node` (named after the test), `ros_node.spin_until(pred, what, timeout)`; the
    context is shut down after the test, pass or fail."""
    pytest.importorskip('rclpy')
    rn = RosTestNode('test_' + request.node.name.split('[')[0][:40].replace('-', '_'))
    yield rn
    rn.close()


@pytest.fixture(scope='session')
def embedded_arm_ckpt(tmp_path_factory):
    """A random-init 'tiny' checkpoint for the embedded arm's graph (joints joint1..3, camera
    'overhead' 96x96, dt 0.1 s): what the launch and graph tests run policy_node with."""
    import torch
    torch.set_num_threads(1)
    from dp_policy.checkpoint import create_untrained_checkpoint
    path = tmp_path_factory.mktemp('ckpt') / 'embedded_arm_tiny.ckpt'
    return str(create_untrained_checkpoint(path, ['joint1', 'joint2', 'joint3'], ['overhead'],
                                           (96, 96), preset='tiny', dt_s=0.1,
                                           action_min=-1.0, action_max=1.0))
