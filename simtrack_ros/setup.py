"""ament_python build of simtrack_ros (colcon on a ROS 2 install, or pip in a venv)."""
from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'simtrack_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        (os.path.join('share', PACKAGE, 'launch'), glob('launch/*launch.[pxy][yma]*')),
        (os.path.join('share', PACKAGE, 'config'), glob('config/*.yaml') + glob('config/*.xml')),
        # The demo weights (docs/demo-model.md), found by ros/model_loading.py.
        (os.path.join('share', PACKAGE, 'weights'), glob('weights/*.pth')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='simtrack_ros maintainers',
    maintainer_email='maintainers@simtrack-ros.org',
    description='SimTrack single-object tracking with tracking-challenge classification for USVs.',
    license='MIT',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'tracker_node = simtrack_ros.ros.tracker_node:main',
            'demo = simtrack_ros.ros.demo:main',
            'demo_camera = simtrack_ros.ros.demo_camera:main',
            'convert_checkpoint = simtrack_ros.model.convert:main',
            'simtrack-annotate = simtrack_ros.data.annotate:main',
            'simtrack-synth = simtrack_ros.data.synth_cli:main',
            'simtrack-finetune = simtrack_ros.training.cli:main',
            'simtrack-eval = simtrack_ros.evaluation.cli:main',
            'simtrack-export = simtrack_ros.export.cli:main',
            'simtrack-guard = simtrack_ros.evaluation.guard_cli:main',
            'simtrack-calibrate = simtrack_ros.training.calibrate_cli:main',
        ],
    },
)
