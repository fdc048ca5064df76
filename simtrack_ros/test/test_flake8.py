"""Style: the ament_flake8 rules (setup.cfg [flake8]) hold for every Python file."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]


def test_flake8_clean():
    pytest.importorskip('flake8', reason='flake8 is not installed (requirements/python.txt)')
    result = subprocess.run(
        [sys.executable, '-m', 'flake8', '--config', 'setup.cfg', 'simtrack_ros', 'test',
         'benchmarks', 'launch', 'setup.py'],
        cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f'flake8 found problems:\n{result.stdout}{result.stderr}'
