r"""Launch the SimTrack tracker node, optionally with the synthetic demo camera.

Examples:
  ros2 launch simtrack_ros tracker.launch.py image_topic:=/camera/image_raw weights:=/w.pth
  ros2 launch simtrack_ros tracker.launch.py demo:=true
  ros2 launch simtrack_ros tracker.launch.py image_topic:=/bow/image_raw compressed_input:=true

Set a target with the ``set_target`` service (``/<namespace>/simtrack/set_target``), e.g.
  ros2 service call /simtrack/set_target simtrack_ros_interfaces/srv/SetTarget \
      "{bbox: {center: {position: {x: 400.0, y: 300.0}}, size_x: 90.0, size_y: 42.0}}"
(a zero header stamp means the newest frame; with demo:=true the boat's true box is on
/demo_camera/ground_truth). ``ros2 run simtrack_ros demo`` instead runs the tracker, the demo
camera and a client that sets the target, in one process, without launch.

The node configures and activates itself (parameter ``autostart``), so a plain ``Node`` action
works on Humble, Jazzy and Kilted alike. To drive the lifecycle from outside instead, set
``autostart: false`` in the params file and use ``launch_ros.actions.LifecycleNode`` (with
``autostart=True`` on Jazzy and newer) or a lifecycle manager.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'simtrack_ros'
BOOLEAN = ['true', 'false']


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the tracker (and demo camera) nodes."""
    namespace = LaunchConfiguration('namespace')
    image_topic = LaunchConfiguration('image_topic')
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
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), 'config',
                                                'tracker.yaml']),
            description='Parameter file of the tracker node. The weights, device, '
                        'compressed_input and use_sim_time arguments override its values.'),
        DeclareLaunchArgument(
            'weights', default_value='',
            description='SimTrack checkpoint (.pth); empty: the demo model with random '
                        'weights (boxes and classes are not meaningful).'),
        DeclareLaunchArgument(
            'device', default_value='auto', choices=['auto', 'cpu', 'cuda'],
            description='Inference device; auto takes CUDA when available, else the CPU. '
                        'To pick one of several GPUs set CUDA_VISIBLE_DEVICES.'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false', choices=BOOLEAN,
            description='Use the /clock topic as the time source.'),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            choices=['debug', 'info', 'warn', 'error', 'fatal'],
            description='Logging level of the nodes.'),
        DeclareLaunchArgument(
            'compressed_input', default_value='false', choices=BOOLEAN,
            description='Subscribe to sensor_msgs/CompressedImage on <image_topic>/compressed '
                        'instead of raw images.'),
        DeclareLaunchArgument(
            'demo', default_value='false', choices=BOOLEAN,
            description='Also start the synthetic sea demo camera, publishing raw images on '
                        'image_topic (its true target box on demo_camera/ground_truth).'),
    ]
    tracker = Node(
        package=PACKAGE,
        executable='tracker_node',
        name='simtrack',
        namespace=namespace,
        parameters=[
            LaunchConfiguration('params_file'),
            {
                'weights': ParameterValue(LaunchConfiguration('weights'), value_type=str),
                'device': ParameterValue(LaunchConfiguration('device'), value_type=str),
                'compressed_input': ParameterValue(
                    LaunchConfiguration('compressed_input'), value_type=bool),
                'use_sim_time': ParameterValue(
                    LaunchConfiguration('use_sim_time'), value_type=bool),
            },
        ],
        remappings=[('image', image_topic), ('image/compressed', [image_topic, '/compressed'])],
        ros_arguments=['--log-level', LaunchConfiguration('log_level')],
        output='screen',
    )
    # The demo camera is a wall-clock source: it stamps frames with system time.
    demo_camera = Node(
        package=PACKAGE,
        executable='demo_camera',
        name='demo_camera',
        namespace=namespace,
        remappings=[('image', image_topic)],
        ros_arguments=['--log-level', LaunchConfiguration('log_level')],
        output='screen',
        condition=IfCondition(LaunchConfiguration('demo')),
    )
    return LaunchDescription([*arguments, demo_camera, tracker])
