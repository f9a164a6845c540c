"""Safe sampling (ROS-free): differentiable forward kinematics and collision spheres from the URDF
(kinematics), costs on chunks of joint positions (costs), guided denoising (guide)."""
