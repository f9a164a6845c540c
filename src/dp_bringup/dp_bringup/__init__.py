"""dp_bringup: launch files, robot configurations and a process starter for dp_ros."""
