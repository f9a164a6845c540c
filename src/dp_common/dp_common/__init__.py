"""Shared message<->array conversions (images, joint states, trajectories) and small ROS helpers for dp_ros."""
