"""dp_eval: rosbag-based and closed-loop evaluation of Diffusion Policy checkpoints."""
