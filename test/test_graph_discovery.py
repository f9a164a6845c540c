"""Localhost discovery with many DDS participants on one domain (config/fastdds.xml).

With ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST there is no multicast: a participant announces
itself to the discovery ports of participant ids 0..maxInitialPeersRange-1 on 127.0.0.1 only, so
two participants whose ids are both past that range never meet. The test suite alone (contexts of
earlier tests, the graph's processes) and a robot PC (ros2_control, the dp nodes, RViz, CLI tools)
can get there; the workspace's Fast DDS profile widens the range. This test fills the domain with
the contexts of a child process, then needs a publisher in another process and a subscriber here
to match.
"""
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip('rclpy')

pytestmark = pytest.mark.graph

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time, rclpy
held = []
for i in range(int(sys.argv[1])):
    c = rclpy.context.Context(); rclpy.init(context=c)
    held.append((c, rclpy.create_node(f'crowd_{i}', context=c)))
print('ready', flush=True)
time.sleep(120)
"""
PUBLISH = """
import time, rclpy
from std_msgs.msg import String
rclpy.init(); n = rclpy.create_node('crowd_publisher')
p = n.create_publisher(String, '/crowd_probe', 10)
print('ready', flush=True)
t_end = time.monotonic() + 120       # never outlives a killed test run by long
while rclpy.ok() and time.monotonic() < t_end:
    p.publish(String(data='here')); rclpy.spin_once(n, timeout_sec=0.1)
"""


def _start(code, *args, timeout_s=60.0):
    """A child python running `code`, once it printed 'ready' (its logs go to a file)."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, '-c', code, *args], stdout=subprocess.PIPE,
                            stderr=log, text=True, env=dict(os.environ), start_new_session=True)
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline() if ready else ''
    if 'ready' not in line:
        _stop(proc)
        log.seek(0)
        pytest.fail(f'child did not start: {line!r} {log.read()[-2000:]!r}')
    return proc


def _stop(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_a_pair_matches_past_the_32nd_participant_of_the_domain(background_graph):
    if (os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') != 'LOCALHOST'
            or rclpy.get_rmw_implementation_identifier() != 'rmw_fastrtps_cpp'
            or os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE') != str(ROOT / 'config' / 'fastdds.xml')):
        pytest.skip("the workspace's Fast DDS profile with localhost discovery only (as `make test` "
                    'runs it) is what this checks')
    from std_msgs.msg import String
    crowd = _start(HOLD, '36')           # ids 0..35 (and more with the suite's own contexts)
    publisher = None
    try:
        publisher = _start(PUBLISH)
        graph = background_graph('crowd_subscriber')       # its context joins after the crowd
        got = []
        graph.driver.create_subscription(String, '/crowd_probe', got.append, 10)
        graph.start()
        t0 = time.monotonic()
        while not got and time.monotonic() < t0 + 30.0:
            time.sleep(0.1)
        assert got, ('a publisher and a subscriber past the 36 participants of the domain did '
                     'not match in 30 s (localhost discovery range: config/fastdds.xml)')
        print(f'matched in {time.monotonic() - t0:.1f} s')
    finally:
        if publisher is not None:
            _stop(publisher)
        _stop(crowd)
