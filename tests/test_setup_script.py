"""scripts/setup.sh is idempotent: a second run skips every step and changes nothing."""
from __future__ import annotations

import os
import pathlib
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[1]


def _snapshot(path: pathlib.Path) -> dict:
    """Modification time of every file and link (not of what a link points to)."""
    return {p: p.lstat().st_mtime_ns for p in path.rglob('*') if not p.is_dir()}


def test_second_setup_run_changes_nothing():
    install = REPO / '.ros_ws' / 'install'
    before = _snapshot(install)
    env = {k: v for k, v in os.environ.items() if k != '_ROS_WHEELS_BOOTSTRAP_COMPLETE'}
    result = subprocess.run(['bash', str(REPO / 'scripts' / 'setup.sh')], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for expected in ('Python packages up to date', 'ROS wheel CMake fix already applied',
                     'interface packages up to date',
                     'simtrack_ros workspace package up to date'):
        assert any(expected in line for line in lines), (expected, result.stdout)
    assert not any('installing' in line or 'building' in line for line in lines), result.stdout
    assert _snapshot(install) == before
