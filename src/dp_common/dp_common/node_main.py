"""The `main()` of every dp_ros node: init, spin, clean shutdown on SIGINT/SIGTERM.

    def main(args=None):
        return run_node(MyNode, args, cleanup=MyNode.stop_threads)

rclpy is imported inside `run_node` (importing dp_common stays rclpy-free). A node that stops
by itself (a demonstrator after N episodes) passes `done`, a predicate polled between callbacks.
`cleanup(node)` runs before `destroy_node()` whatever happened (stop the node's own threads there).
An exception raised while rclpy is still up propagates (non-zero exit); one raised because SIGINT
shut the context down inside a wait (an RCLError) is the normal way out and is swallowed.
"""
from __future__ import annotations

import signal
import time
from typing import Any, Callable, Optional


def run_node(make_node: Callable[[], Any], args: Optional[list[str]] = None, *,
             done: Optional[Callable[[Any], bool]] = None,
             cleanup: Optional[Callable[[Any], None]] = None,
             after_create: Optional[Callable[[Any], None]] = None) -> int:
    """Create the node, spin it on a single-threaded executor until shutdown (or `done(node)`),
    clean up; returns the process exit code (0)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if after_create is not None:
            after_create(node)
        if done is None:
            executor.spin()
        else:
            while rclpy.ok() and not done(node):
                executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001 - SIGINT can shut the context down inside a wait (RCLError)
        # ... or interrupt a take before rclpy's handler has shut the context down (pybind11:
        # "Unable to convert call argument"): a shutdown that follows within a second says so.
        # A second SIGINT during that second (the terminal's and `ros2 launch`'s) says so too.
        deadline = time.monotonic() + 1.0
        try:
            while rclpy.ok() and time.monotonic() < deadline:
                time.sleep(0.01)
        except KeyboardInterrupt:
            pass
        else:
            if rclpy.ok():
                raise
    finally:
        # `ros2 launch` forwards SIGINT to its processes after the terminal sent them one: a
        # second SIGINT must not interrupt the cleanup with a KeyboardInterrupt traceback (launch
        # escalates to SIGTERM, then SIGKILL, if a process does not stop). One that arrives
        # before the handler is set raises here: set it again.
        while True:
            try:
                _ignore_sigint()
                break
            except KeyboardInterrupt:
                continue
        try:
            if node is not None:
                if cleanup is not None:
                    cleanup(node)
                node.destroy_node()
        except KeyboardInterrupt:   # one that was already pending when the cleanup began
            pass
        rclpy.try_shutdown()
    return 0


def _ignore_sigint() -> None:
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:      # not the main thread (a node run inside a test): nothing to do
        pass
