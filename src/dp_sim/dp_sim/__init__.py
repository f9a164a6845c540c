"""Embedded MuJoCo simulation of a planar arm speaking ros2_control topic interfaces, scripted demonstrator and rosbag2 recorder."""
