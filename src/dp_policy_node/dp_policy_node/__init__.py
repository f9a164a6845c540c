"""Diffusion Policy: ROS-free core (network, schedulers, policy, checkpoints, rosbag2 dataset, training) and the policy_node."""
