"""simtrack_ros: SimTrack tracking with challenge classification for ROS 2."""

__version__ = '0.1.0'
