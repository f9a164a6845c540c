"""Trajectory follower: ROS-free core (plan, splines, blending, limits, watchdog) and follower_node for ros2_control."""
