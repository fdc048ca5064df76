"""Data (ROS-free): tracking sequences, challenge annotations, synthetic maritime scenes."""
