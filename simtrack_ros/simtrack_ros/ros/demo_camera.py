"""The demo camera node: a synthetic sea scene with a moving boat, and the boat's true box.

Publishes ``image`` (sensor_msgs/Image, bgr8) and ``~/ground_truth`` (vision_msgs/Detection2D
with the same header as the image it belongs to). The pixels come from the ROS-free
:func:`simtrack_ros.data.synthetic_sea.render_sea_frame`; frame ``n`` shows the scene at
``t = n / fps`` whatever the timer jitter, so a run is reproducible for a given seed.
"""
from __future__ import annotations

import array
from typing import List, Optional

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2D, ObjectHypothesisWithPose

from simtrack_ros.data.synthetic_sea import BoxXYWH, render_sea_frame
from simtrack_ros.ros.allocator_tuning import tune_allocator_for_images
from simtrack_ros.ros.node_process import NodeProcess

#: ``Detection2D.id`` and class of the ground-truth box.
GROUND_TRUTH_ID = 'ground_truth'
TARGET_CLASS = 'boat'


def _int_descriptor(description: str, low: int, high: int) -> ParameterDescriptor:
    return ParameterDescriptor(
        type=ParameterType.PARAMETER_INTEGER, description=description, read_only=True,
        integer_range=[IntegerRange(from_value=low, to_value=high, step=1)])


def ground_truth_message(image: Image, box: BoxXYWH) -> Detection2D:
    """Return the true box of the target as a Detection2D with the header of ``image``."""
    x, y, w, h = box
    detection = Detection2D(header=image.header, id=GROUND_TRUTH_ID)
    detection.bbox.center.position.x = x + w / 2
    detection.bbox.center.position.y = y + h / 2
    detection.bbox.size_x = w
    detection.bbox.size_y = h
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = TARGET_CLASS
    hypothesis.hypothesis.score = 1.0
    detection.results.append(hypothesis)
    return detection


class DemoCameraNode(Node):
    """Publishes the synthetic sea scene as a camera would, plus the target's true box."""

    def __init__(self, **kwargs) -> None:
        super().__init__('demo_camera', **kwargs)
        self._width = self.declare_parameter(
            'width', 640, _int_descriptor('Image width in pixels.', 32, 4096)).value
        self._height = self.declare_parameter(
            'height', 480, _int_descriptor('Image height in pixels.', 32, 4096)).value
        self._fps = self.declare_parameter('fps', 30.0, ParameterDescriptor(
            type=ParameterType.PARAMETER_DOUBLE, description='Frames per second.',
            read_only=True,
            floating_point_range=[FloatingPointRange(from_value=0.1, to_value=120.0)])).value
        self._seed = self.declare_parameter('seed', 0, _int_descriptor(
            'Scene seed: wave pattern, boat path and hull colour.', 0, 2 ** 31 - 1)).value
        self._frame_id = self.declare_parameter('frame_id', 'camera', ParameterDescriptor(
            type=ParameterType.PARAMETER_STRING, description='header.frame_id of the images.',
            read_only=True)).value
        self._image_pub = self.create_publisher(Image, 'image', QoSProfile(depth=2))
        self._truth_pub = self.create_publisher(Detection2D, '~/ground_truth', 10)
        self._frame_index = 0
        self._timer = self.create_timer(1.0 / self._fps, self._publish_frame)
        self.get_logger().info(
            f'publishing a synthetic sea scene, {self._width}x{self._height} bgr8 at '
            f'{self._fps:g} Hz, on {self._image_pub.topic_name} (true box on '
            f'{self._truth_pub.topic_name})')

    def _publish_frame(self) -> None:
        frame, box = render_sea_frame(self._frame_index / self._fps, self._width,
                                      self._height, self._seed)
        self._frame_index += 1
        image = Image(height=self._height, width=self._width, encoding='bgr8',
                      is_bigendian=0, step=self._width * 3)
        image.header.stamp = self.get_clock().now().to_msg()
        image.header.frame_id = self._frame_id
        image.data = array.array('B', frame.tobytes())
        self._image_pub.publish(image)
        self._truth_pub.publish(ground_truth_message(image, box))


def main(args: Optional[List[str]] = None) -> None:
    """Run the demo camera on its own until SIGINT or SIGTERM (console script ``demo_camera``)."""
    with NodeProcess('demo_camera', args) as process:
        tune_allocator_for_images()
        process.add(DemoCameraNode(context=process.context))
        process.spin()


if __name__ == '__main__':
    main()
