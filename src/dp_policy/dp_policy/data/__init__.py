"""Demonstrations: rosbag2 episodes, training windows, normalisation."""
