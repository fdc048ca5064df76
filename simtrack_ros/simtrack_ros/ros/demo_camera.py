"""The demo camera node: a synthetic sea scene, or sequences, and the target's true box.

Publishes ``image`` (sensor_msgs/Image) and ``~/ground_truth`` (vision_msgs/Detection2D with
the same header as the image it belongs to). Three sources:

* ``sequences: ''`` (default): the ROS-free
  :func:`simtrack_ros.data.synthetic_sea.render_sea_frame`, a boat on a sea, bgr8, for ever;
  frame ``n`` shows the scene at ``t = n / fps`` whatever the timer jitter, so a run is
  reproducible for a given seed. The true box's ``id`` is ``ground_truth``.
* ``sequences: FOLDER``: the frames of the sequences in a dataset folder (GOT-10k / MVTD layout,
  one sequence or a root of several, e.g. what ``simtrack-synth`` writes), rgb8 at their own
  size, in order, one per timer tick; then again from the start (``loop: true``) or nothing
  more. The true box's ``id`` is ``<sequence name>:<frame index>`` (:func:`frame_key`), its
  score 1 where the target is visible and 0 where the sequence marks it absent.
* ``generate: N``: the demo's N held-out synthetic sea sequences (:func:`generate_sequences`,
  what the ``demo`` program tracks), written to a temporary folder at start-up and then played
  as ``sequences`` are; the folder is removed with the node.
"""
from __future__ import annotations

import array
import math
import os
from pathlib import Path
import tempfile
import threading
import time
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2D, ObjectHypothesisWithPose

from simtrack_ros.allocator_tuning import tune_allocator_for_images
from simtrack_ros.data import sequences as sequence_io
from simtrack_ros.data.synthetic_dataset import generate_dataset, SequenceResult, SynthOptions
from simtrack_ros.data.synthetic_sea import BoxXYWH, render_sea_frame
from simtrack_ros.ros.node_process import help_requested, NodeProcess

#: ``Detection2D.id`` and class of the ground-truth box of the sea scene.
GROUND_TRUTH_ID = 'ground_truth'
TARGET_CLASS = 'boat'
#: One frame to publish: pixels, encoding, true box, ``Detection2D.id``, target visible.
Frame = Tuple[np.ndarray, str, BoxXYWH, str, bool]
#: Dataset seed and split of the demo's sequences: the demo weights were trained on seed 2026
#: (scripts/train_demo_model.sh), and a sequence's seed derives from both, so these are held out.
#: Seed 374 was picked among 1-400 for coverage: its first four sequences stage cloud + fog,
#: approach + downsampled, turn + occluding vessel, glare + camera shake, and their measured
#: labels show 8 of the 9 challenges (all but partial visibility) besides normal frames.
DEMO_SEED = 374
DEMO_SPLIT = 'test'


def _int_descriptor(description: str, low: int, high: int) -> ParameterDescriptor:
    return ParameterDescriptor(
        type=ParameterType.PARAMETER_INTEGER, description=description, read_only=True,
        integer_range=[IntegerRange(from_value=low, to_value=high, step=1)])


def frame_key(sequence: str, index: int) -> str:
    """Return the ground truth's ``id`` for frame ``index`` (0-based) of ``sequence``."""
    return f'{sequence}:{index}'


def parse_frame_key(key: str) -> Optional[Tuple[str, int]]:
    """``(sequence, frame index)`` from a :func:`frame_key`; None for any other id."""
    sequence, colon, index = key.rpartition(':')
    return (sequence, int(index)) if colon and sequence and index.isdigit() else None


def ground_truth_message(image: Image, box: BoxXYWH, key: str = GROUND_TRUTH_ID,
                         visible: bool = True) -> Detection2D:
    """Return the true box of the target as a Detection2D with the header of ``image``.

    Non-finite coordinates (an absent target's row) become 0; ``visible`` False gives score 0.
    """
    x, y, w, h = (float(v) if math.isfinite(v) else 0.0 for v in box)
    detection = Detection2D(header=image.header, id=key)
    detection.bbox.center.position.x = x + w / 2
    detection.bbox.center.position.y = y + h / 2
    detection.bbox.size_x = w
    detection.bbox.size_y = h
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = TARGET_CLASS
    hypothesis.hypothesis.score = 1.0 if visible else 0.0
    detection.results.append(hypothesis)
    return detection


def generate_sequences(folder: Path, count: int, options: SynthOptions = SynthOptions(),
                       seed: int = DEMO_SEED, say: Callable[[str], None] = print
                       ) -> List[SequenceResult]:
    """Write the demo's held-out sequences to ``folder/test`` (a progress bar on stderr).

    Renders them in up to one process per CPU with simtrack-synth's generator; ``say``
    reports what is made and how long it took.
    """
    workers = max(1, min(os.cpu_count() or 1, count))
    say(f'generating {count} held-out sea sequences of {options.frames} frames at '
        f'{options.width}x{options.height} (seed {seed}, split {DEMO_SPLIT}) with {workers} '
        'processes ...')
    started = time.monotonic()
    results = generate_dataset(folder, {DEMO_SPLIT: count}, options, seed=seed, workers=workers)
    say(f'generated {count} sequences in {time.monotonic() - started:.1f} s')
    return results


def read_sequences(folder: str) -> List[sequence_io.Sequence]:
    """Read the sequences of a dataset folder, or the one sequence that ``folder`` is."""
    return sequence_io.read_dataset(folder) or [sequence_io.read_sequence(folder)]


class SequencePlayer:
    """Frames of sequences in order (then again when ``loop``), read from disk one at a time."""

    def __init__(self, sequences: Sequence[sequence_io.Sequence], loop: bool) -> None:
        self.sequences = list(sequences)
        self.loop = loop
        self._sequence, self._index = 0, 0

    def next_frame(self) -> Optional[Frame]:
        """Return the next frame, or None after the last one when not looping."""
        if self._index >= len(self.sequences[self._sequence]):
            self._sequence, self._index = self._sequence + 1, 0
            if self._sequence == len(self.sequences):
                if not self.loop:
                    return None
                self._sequence = 0
        sequence, index = self.sequences[self._sequence], self._index
        self._index += 1
        absent = sequence.absent is not None and bool(sequence.absent[index])
        return (sequence.frame(index), 'rgb8', tuple(sequence.boxes[index]),
                frame_key(sequence.name, index), not absent)


class SeaScene:
    """The synthetic sea scene with a moving boat, frame ``n`` at ``t = n / fps``."""

    def __init__(self, width: int, height: int, fps: float, seed: int) -> None:
        self.width, self.height, self.fps, self.seed = width, height, fps, seed
        self._index = 0

    def next_frame(self) -> Frame:
        """Render the next frame."""
        frame, box = render_sea_frame(self._index / self.fps, self.width, self.height,
                                      self.seed)
        self._index += 1
        return frame, 'bgr8', box, GROUND_TRUTH_ID, True


class DemoCameraNode(Node):
    """Publishes the sea scene or recorded sequences as a camera would, plus the true box.

    Args:
        paused: start without publishing until :meth:`play` (a program that must set up its
            subscribers first, such as the demo, so that no first frame is missed).
        **kwargs: passed on to ``rclpy.node.Node``.
    """

    def __init__(self, paused: bool = False, **kwargs) -> None:
        super().__init__('demo_camera', **kwargs)
        width = self.declare_parameter(
            'width', 640, _int_descriptor('Image width in pixels (sea scene).', 32, 4096)).value
        height = self.declare_parameter(
            'height', 480, _int_descriptor('Image height in pixels (sea scene).', 32,
                                           4096)).value
        fps = self.declare_parameter('fps', 30.0, ParameterDescriptor(
            type=ParameterType.PARAMETER_DOUBLE, description='Frames per second.',
            read_only=True,
            floating_point_range=[FloatingPointRange(from_value=0.1, to_value=120.0)])).value
        seed = self.declare_parameter('seed', 0, _int_descriptor(
            'Sea scene seed: wave pattern, boat path and hull colour.', 0, 2 ** 31 - 1)).value
        folder = self.declare_parameter('sequences', '', ParameterDescriptor(
            type=ParameterType.PARAMETER_STRING, read_only=True,
            description='Dataset folder (GOT-10k/MVTD layout) whose sequences are published '
                        "in order at their own size instead of the sea scene; '': the sea "
                        'scene.')).value
        generate = self.declare_parameter('generate', 0, _int_descriptor(
            "Generate this many of the demo's held-out synthetic sea sequences (640x360, 150 "
            'frames each) at start-up and publish them; 0: off.', 0, 100)).value
        loop = self.declare_parameter('loop', True, ParameterDescriptor(
            type=ParameterType.PARAMETER_BOOL, read_only=True,
            description='Play the sequences again after the last one (false: stop '
                        'publishing).')).value
        self._frame_id = self.declare_parameter('frame_id', 'camera', ParameterDescriptor(
            type=ParameterType.PARAMETER_STRING, description='header.frame_id of the images.',
            read_only=True)).value
        self._generated: Optional[tempfile.TemporaryDirectory] = None
        if generate:
            self._generated = tempfile.TemporaryDirectory(prefix='demo_camera_')
            generate_sequences(Path(self._generated.name), generate, SynthOptions(fps=fps),
                               say=self.get_logger().info)
            folder = str(Path(self._generated.name) / DEMO_SPLIT)
        if folder:
            self._source = SequencePlayer(read_sequences(folder), loop)
            frames = sum(len(s) for s in self._source.sequences)
            what = (f'{len(self._source.sequences)} sequences ({frames} frames) from {folder}'
                    f'{", looping" if loop else ", once"}')
        else:
            self._source = SeaScene(width, height, fps, seed)
            what = f'a synthetic sea scene, {width}x{height} bgr8'
        self._playing = threading.Event()
        if not paused:
            self._playing.set()
        self._image_pub = self.create_publisher(Image, 'image', QoSProfile(depth=2))
        self._truth_pub = self.create_publisher(Detection2D, '~/ground_truth', 10)
        self._timer = self.create_timer(1.0 / fps, self._publish_frame)
        self.get_logger().info(
            f'publishing {what} at {fps:g} Hz on {self._image_pub.topic_name} (true box on '
            f'{self._truth_pub.topic_name})')

    def destroy_node(self) -> None:
        """Destroy the node, then the generated sequences' folder."""
        super().destroy_node()
        if self._generated is not None:
            self._generated.cleanup()

    def play(self) -> None:
        """Start publishing (a camera created with ``paused=True``); any thread."""
        self._playing.set()

    def _publish_frame(self) -> None:
        if not self._playing.is_set():
            return
        frame = self._source.next_frame()
        if frame is None:
            self._timer.cancel()
            self.get_logger().info('all sequences published')
            return
        pixels, encoding, box, key, visible = frame
        height, width = pixels.shape[:2]
        image = Image(height=height, width=width, encoding=encoding, is_bigendian=0,
                      step=width * 3)
        image.header.stamp = self.get_clock().now().to_msg()
        image.header.frame_id = self._frame_id
        image.data = array.array('B', pixels.tobytes())
        self._image_pub.publish(image)
        self._truth_pub.publish(ground_truth_message(image, box, key, visible))


def main(args: Optional[List[str]] = None) -> None:
    """Run the demo camera on its own until SIGINT or SIGTERM (console script ``demo_camera``)."""
    if help_requested(args):
        print('usage: ros2 run simtrack_ros demo_camera [--ros-args -p NAME:=VALUE ...]\n\n'
              f'{__doc__.strip()}\n\nIts parameters: ros2 param list /demo_camera, then '
              'ros2 param describe /demo_camera NAME.')
        return
    with NodeProcess('demo_camera', args) as process:
        tune_allocator_for_images()
        process.add(DemoCameraNode(context=process.context))
        process.spin()


if __name__ == '__main__':
    main()
