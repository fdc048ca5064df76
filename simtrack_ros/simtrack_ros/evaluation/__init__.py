"""Tracker evaluation: OPE metrics, runs over sequences, OpenCV baselines, reports (ROS-free)."""
