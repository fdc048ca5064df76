r"""Launch the SimTrack tracker node, optionally with the synthetic demo camera.

Examples:
  ros2 launch simtrack_ros tracker.launch.py image_topic:=/camera/image_raw weights:=/w.pth
  ros2 launch simtrack_ros tracker.launch.py demo:=true
  ros2 launch simtrack_ros tracker.launch.py image_topic:=/bow/image_raw compressed_input:=true
  ros2 launch simtrack_ros tracker.launch.py demo:=true runtime:=openvino precision:=fp32

Set a target with the ``set_target`` service (``/<namespace>/simtrack/set_target``), e.g.
  ros2 service call /simtrack/set_target simtrack_ros_interfaces/srv/SetTarget \
      "{bbox: {center: {position: {x: 400.0, y: 300.0}}, size_x: 90.0, size_y: 42.0}}"
(a zero header stamp means the newest frame; with demo:=true the boat's true box is on
/<namespace>/demo_camera/ground_truth). ``ros2 run simtrack_ros demo`` instead runs the
tracker, the demo camera and a client that sets the target, in one process, without launch.

Parameters come from ``params_file`` (default: the package's config/tracker.yaml). The
``weights``, ``device``, ``runtime``, ``precision``, ``compressed_input`` and ``search_factor``
arguments override it only when given on the command line (their empty default keeps the
file's value); ``use_sim_time`` always applies. With ``demo:=true`` and none of ``weights``,
``search_factor`` and ``params_file`` given, ``search_factor`` is the one the demo weights were
tuned for
(``simtrack_ros.ros.demo_settings``), as in ``ros2 run simtrack_ros demo``.

The node configures and activates itself (parameter ``autostart``), so a plain ``Node`` action
works on Humble, Jazzy and Kilted alike. To drive the lifecycle from outside instead, set
``autostart: false`` in the params file and use ``launch_ros.actions.LifecycleNode`` (with
``autostart=True`` on Jazzy and newer) or a lifecycle manager.
"""
from typing import Dict, List

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from simtrack_ros.ros.demo_settings import demo_search_factor

PACKAGE = 'simtrack_ros'
BOOLEAN = ['true', 'false']
#: Launch arguments that set the node parameter of the same name (with its type) only when
#: given on the command line; their empty default keeps the value from params_file.
OPTIONAL_OVERRIDES = {'weights': str, 'device': str, 'runtime': str, 'precision': str,
                      'compressed_input': bool, 'search_factor': float}


def default_params_file() -> PathJoinSubstitution:
    """Return the package's parameter file, config/tracker.yaml in its share directory."""
    return PathJoinSubstitution([FindPackageShare(PACKAGE), 'config', 'tracker.yaml'])


def parameter_overrides(context: LaunchContext) -> Dict[str, ParameterValue]:
    """Return the node parameters that override params_file: the given optional arguments."""
    overrides = {}
    for name, value_type in OPTIONAL_OVERRIDES.items():
        value = LaunchConfiguration(name).perform(context)
        if value:
            # Plain values are type-checked, not parsed: convert the text here.
            typed = value == 'true' if value_type is bool else value_type(value)
            overrides[name] = ParameterValue(typed, value_type=value_type)
    demo_factor = demo_search_factor(
        LaunchConfiguration('demo').perform(context) == 'true',
        weights=LaunchConfiguration('weights').perform(context),
        search_factor=LaunchConfiguration('search_factor').perform(context),
        own_params_file=(LaunchConfiguration('params_file').perform(context)
                         != default_params_file().perform(context)))
    if demo_factor is not None:
        overrides['search_factor'] = ParameterValue(demo_factor, value_type=float)
    # A launch-level convention: the use_sim_time argument always sets the parameter.
    overrides['use_sim_time'] = ParameterValue(
        LaunchConfiguration('use_sim_time'), value_type=bool)
    return overrides


def node_log_level(context: LaunchContext, name: str) -> List[str]:
    """Return ``--log-level <logger>:=<level>`` for the node's own logger only.

    A bare ``--log-level debug`` would also turn on the debug output of rcl and the middleware.
    A node's logger is its namespace and name joined by dots (``boat.simtrack``).
    """
    namespace = LaunchConfiguration('namespace').perform(context).strip('/')
    logger = '.'.join([*filter(None, namespace.split('/')), name])
    return ['--log-level', f'{logger}:={LaunchConfiguration("log_level").perform(context)}']


def launch_tracker(context: LaunchContext) -> List[Node]:
    """Return the tracker node, with the overrides the launch arguments resolve to."""
    image_topic = LaunchConfiguration('image_topic')
    return [Node(
        package=PACKAGE,
        executable='tracker_node',
        name='simtrack',
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file'), parameter_overrides(context)],
        remappings=[('image', image_topic), ('image/compressed', [image_topic, '/compressed'])],
        ros_arguments=node_log_level(context, 'simtrack'),
        output='screen',
    )]


def launch_demo_camera(context: LaunchContext) -> List[Node]:
    """Return the demo camera node when ``demo`` is true (a wall-clock source)."""
    if LaunchConfiguration('demo').perform(context) != 'true':
        return []
    return [Node(
        package=PACKAGE,
        executable='demo_camera',
        name='demo_camera',
        namespace=LaunchConfiguration('namespace'),
        remappings=[('image', LaunchConfiguration('image_topic'))],
        parameters=[{'generate': 4}],
        ros_arguments=node_log_level(context, 'demo_camera'),
        output='screen',
    )]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the tracker (and demo camera) nodes."""
    arguments = [
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the nodes (one tracker per camera).'),
        DeclareLaunchArgument(
            'image_topic', default_value='image',
            description='Camera image topic (sensor_msgs/Image), remapped onto the input '
                        '"image"; with compressed_input the node reads <image_topic>/compressed.'),
        DeclareLaunchArgument(
            'params_file',
            default_value=default_params_file(),
            description='Parameter file of the tracker node. The weights, device, runtime, '
                        'precision and compressed_input arguments override its values only '
                        'when given; '
                        'use_sim_time always does.'),
        DeclareLaunchArgument(
            'weights', default_value='',
            description='SimTrack checkpoint (.pth) or exported model (.onnx); empty: take '
                        'weights from params_file '
                        "(whose own empty value runs the package's demo weights)."),
        DeclareLaunchArgument(
            'device', default_value='', choices=['', 'auto', 'cpu', 'cuda'],
            description='Inference device; empty: take device from params_file; auto takes '
                        'CUDA when available, else the CPU. To pick one of several GPUs set '
                        'CUDA_VISIBLE_DEVICES.'),
        DeclareLaunchArgument(
            'runtime', default_value='', choices=['', 'auto', 'torch', 'onnxruntime', 'openvino'],
            description='Inference runtime; empty: take runtime from params_file; openvino / '
                        'onnxruntime export a .pth once into a cache beside it.'),
        DeclareLaunchArgument(
            'precision', default_value='', choices=['', 'auto', 'fp32', 'fp16', 'bf16', 'int8'],
            description='Inference precision; empty: take precision from params_file; auto '
                        'picks bf16 only on hardware with native bf16 (and a wide model).'),
        DeclareLaunchArgument(
            'search_factor', default_value='',
            description='Search crop side / target scale; empty: take search_factor from '
                        'params_file (4.0, the official value); with demo:=true and no '
                        'weights or params_file argument, the factor the demo weights were '
                        'tuned for (as '
                        '"ros2 run simtrack_ros demo" runs them).'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false', choices=BOOLEAN,
            description='Use the /clock topic as the time source.'),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            choices=['debug', 'info', 'warn', 'error', 'fatal'],
            description="Logging level of the nodes' own loggers (rcl and the middleware "
                        'keep theirs).'),
        DeclareLaunchArgument(
            'compressed_input', default_value='', choices=['', 'true', 'false'],
            description='Subscribe to sensor_msgs/CompressedImage on <image_topic>/compressed '
                        'instead of raw images; empty: take compressed_input from '
                        'params_file.'),
        DeclareLaunchArgument(
            'demo', default_value='false', choices=BOOLEAN,
            description="Also start the demo camera, publishing the demo's four held-out "
                        'synthetic sea sequences (generated at start-up, 10-20 s; looping) as '
                        'raw images on image_topic (the true target box on '
                        'demo_camera/ground_truth in the namespace); it has no compressed '
                        'output, so not with compressed_input:=true.'),
    ]
    # OpaqueFunctions, since the overrides and logger names depend on the argument values.
    return LaunchDescription([*arguments, OpaqueFunction(function=launch_demo_camera),
                              OpaqueFunction(function=launch_tracker)])
