# Source this file (bash) to get the simtrack_ros environment made by scripts/setup.sh:
# the virtual environment, the colcon workspace .ros_ws (simtrack_ros and the interfaces on
# PYTHONPATH, LD_LIBRARY_PATH and AMENT_PREFIX_PATH), simtrack_ros's executables on PATH (what
# `ros2 run simtrack_ros <name>` would start) and loopback-only DDS discovery unless you chose
# otherwise.
_simtrack_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -f "$_simtrack_root/.ros_ws/install/setup.bash" ]; then
  echo "simtrack_ros: environment not set up; run: bash $_simtrack_root/scripts/setup.sh" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
source "$_simtrack_root/.venv/bin/activate"
# The ROS wheels re-execute Python to set LD_LIBRARY_PATH; a stale guard from a parent breaks it.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# shellcheck disable=SC1091
source "$_simtrack_root/.ros_ws/install/setup.bash"
export PATH="$_simtrack_root/.ros_ws/install/simtrack_ros/lib/simtrack_ros:$PATH"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
# OpenMP threads sleep instead of spinning: robust when the CPU is shared with other nodes.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
unset _simtrack_root
