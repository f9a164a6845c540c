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
