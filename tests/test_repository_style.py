"""Style: the package's flake8 rules (simtrack_ros/setup.cfg) hold for the repository's scripts.

The ament package's own test_flake8 checks the package; this one the files outside it.
"""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_flake8_clean():
    pytest.importorskip('flake8', reason='flake8 is not installed (requirements/python.txt)')
    result = subprocess.run(
        [sys.executable, '-m', 'flake8', '--config', 'simtrack_ros/setup.cfg', 'tests',
         'scripts/fix_ros_wheels.py'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f'flake8 found problems:\n{result.stdout}{result.stderr}'
