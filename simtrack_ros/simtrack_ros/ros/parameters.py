"""The tracker node's parameters: declarations, descriptors and validation.

Model and device parameters are read-only (read once, at configure). The input QoS and
``compressed_input`` apply at the next activation. Everything else applies at once:
``search_factor`` from the next frame, ``template_factor`` to targets set afterwards, the
state thresholds to every target. A bad value is rejected with
``SetParametersResult(successful=False, reason=...)``; a bad value in a params file (wrong
type, out of range, unknown choice) makes the configure transition fail with the reason, and
the node stays up.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
import re
import textwrap
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from simtrack_ros.model.config import CONFIG_NAMES
from simtrack_ros.tracking import EngineOptions, StateThresholds, TrackerOptions
from simtrack_ros.tracking.precision_policy import PRECISION_NAMES, RUNTIME_NAMES

Values = Mapping[str, Any]


@dataclass(frozen=True)
class Spec:
    """One parameter: default (which fixes the type), description and constraints."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Tuple[str, ...] = ()
    pattern: str = ''
    #: Also accept a bool (a tri-state such as auto / true / false).
    or_bool: bool = False

    def descriptor(self) -> ParameterDescriptor:
        """Build the ParameterDescriptor shown by ``ros2 param describe``."""
        text = self.description
        if self.choices:
            text += f' One of: {", ".join(self.choices)}.'
        if self.or_bool:
            text += ' Or true / false.'
        descriptor = ParameterDescriptor(description=text, read_only=self.read_only,
                                         dynamic_typing=self.or_bool)
        if self.low is not None and isinstance(self.default, float):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(self.low), to_value=float(self.high), step=0.0)]
        elif self.low is not None and isinstance(self.default, int):
            descriptor.integer_range = [IntegerRange(
                from_value=int(self.low), to_value=int(self.high), step=1)]
        return descriptor

    def check(self, value: Any) -> Optional[str]:
        """Return why ``value`` is not acceptable, or None."""
        if self.or_bool and isinstance(value, bool):
            return None
        if isinstance(self.default, float) and not (
                isinstance(value, float) and math.isfinite(value)):
            return f'{self.name} must be a finite number, got {value!r}'
        if self.low is not None and not self.low <= value <= self.high:
            return f'{self.name} must be in [{self.low}, {self.high}], got {value!r}'
        if self.choices and value not in self.choices:
            return f'{self.name} must be one of {", ".join(self.choices)}, got {value!r}'
        if self.pattern and not re.fullmatch(self.pattern, value):
            return f'{self.name}: {value!r} is not valid ({self.description})'
        return None


#: Defaults of the tracking and engine settings come from the core's option classes (their one
#: home); the params file and the README are checked against these specs by the tests.
SPECS: Tuple[Spec, ...] = (
    Spec('weights', '', 'Checkpoint file (.pth): ours, an official SimTrack one or CLIP '
         'weights; or an exported model (.onnx, simtrack-export; its template graph beside '
         'it); a relative path is looked up in the working directory, then in the package '
         "share directory. '' runs the package's demo weights (weights/demo_small.pth: small "
         'config trained on synthetic sea scenes, for demos) when model_config is auto; with '
         'another model_config, or without demo weights, a model with random weights (its boxes '
         'and classes are meaningless).', read_only=True),
    Spec('model_config', 'auto', "Model configuration: 'auto' takes it from the checkpoint "
         '(official files: simtrack-b16), or a config name.', read_only=True,
         choices=('auto',) + CONFIG_NAMES),
    Spec('device', EngineOptions.device,
         "Inference device: 'auto' (CUDA when available, else the CPU with a warning), 'cpu', "
         "'cuda' or 'cuda:N'.", read_only=True, pattern=r'auto|cpu|cuda(:\d+)?'),
    Spec('runtime', EngineOptions.runtime,
         "Inference runtime: 'auto' (an .onnx file: openvino when installed, else "
         'onnxruntime; a .pth checkpoint: torch), torch, onnxruntime or openvino (a checkpoint '
         'is exported once into a cache beside it).', read_only=True, choices=RUNTIME_NAMES),
    Spec('precision', EngineOptions.precision,
         "Inference precision: 'auto' (bf16 only where the hardware has native bf16 and the "
         'model is at least 384 wide, else fp32; an int8 file runs int8), fp32, fp16 (CUDA), '
         'bf16 (changes numerics; refused by onnxruntime/openvino on a CPU without native '
         'bf16) or int8 (onnxruntime/openvino; check it with simtrack-guard).',
         read_only=True, choices=PRECISION_NAMES),
    Spec('cuda_graphs', EngineOptions.cuda_graphs,
         'Capture the per-frame forward as a CUDA Graph (CUDA only).', read_only=True),
    Spec('crop_on_device', 'auto', 'Cut the crops on the model device from one frame upload '
         '(true) or with OpenCV on the CPU (false); both give the same pixels bit for bit. '
         'auto: on the device with CUDA, OpenCV on the CPU (5-13x faster there).',
         read_only=True, choices=('auto',), or_bool=True),
    Spec('search_factor', TrackerOptions.search_factor,
         'Search crop side / target scale (applies from the next frame).', low=1.0, high=10.0),
    Spec('template_factor', TrackerOptions.template_factor,
         'Template crop side / target scale (applies to targets set afterwards).',
         low=1.0, high=10.0),
    Spec('uncertain_threshold', StateThresholds.uncertain_below,
         'A tracking target turns uncertain below this confidence.', low=0.0, high=1.0),
    Spec('lost_threshold', StateThresholds.lost_below,
         'Frames below this confidence count towards lost.', low=0.0, high=1.0),
    Spec('recover_threshold', StateThresholds.recover_above,
         'An uncertain or lost target returns to tracking at or above this confidence (at '
         'least uncertain_threshold).', low=0.0, high=1.0),
    Spec('lost_after_frames', StateThresholds.lost_after_frames,
         'Consecutive frames below lost_threshold that make a target lost.', low=1, high=10000),
    Spec('max_targets', 8, 'Most targets tracked at once (each adds to the batched forward).',
         low=1, high=64),
    Spec('max_rate_hz', 0.0, 'Most frames processed per second; 0: every frame the tracker '
         'can keep up with (the newest frame always wins).', low=0.0, high=1000.0),
    Spec('image_reliability', 'auto', 'Reliability of the image subscription: auto (reliable '
         'unless a publisher on the topic is best effort; follows publishers as they come and '
         'go, so a new reliable camera loses no frame), best_effort (SensorData; large images '
         'are often lost whole over Fast DDS UDP) or reliable (applies at the next '
         'activation).',
         choices=('auto', 'best_effort', 'reliable')),
    Spec('image_qos_depth', 1, 'History depth of the image subscription; keep 1 so no stale '
         'frames queue up (applies at the next activation).', low=1, high=100),
    Spec('compressed_input', False, 'Subscribe to image/compressed (sensor_msgs/'
         'CompressedImage) instead of image (applies at the next activation).'),
    Spec('publish_debug_image', True, 'Publish ~/debug_image (drawn only while someone '
         'subscribes).'),
    Spec('frame_buffer_length', 30, 'Recent frames kept for set_target requests that name the '
         'stamp of the frame the box was drawn on (memory: frames x image size).',
         low=1, high=1000),
    Spec('max_template_age_s', 2.0, 'set_target stamps older than the newest frame by more '
         'than this use the newest frame instead.', low=0.0, high=3600.0),
    Spec('diagnostics_period_s', 1.0, 'Period of the /diagnostics status.', low=0.1,
         high=60.0),
    Spec('autostart', True, 'Configure and activate at start-up; false: wait for lifecycle '
         'transitions (launch_ros LifecycleNode, a lifecycle manager).', read_only=True),
)
SPEC_BY_NAME: Dict[str, Spec] = {spec.name: spec for spec in SPECS}


def help_text() -> str:
    """Return the parameters with their defaults and descriptions, for ``--help``."""
    lines = ['parameters (ros2 param describe <node> NAME; read-only ones are read at '
             'configure):']
    for spec in SPECS:
        lines.append(f'  {spec.name} (default {spec.default!r})')
        lines += textwrap.wrap(spec.description, 96, initial_indent=' ' * 6,
                               subsequent_indent=' ' * 6)
    return '\n'.join(lines)


def declare(node: Node) -> Dict[str, str]:
    """Declare every parameter; return rejected overrides' errors by name (defaults used)."""
    errors = {}
    for spec in SPECS:
        try:
            node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            errors[spec.name] = f'parameter {spec.name}: {exc}'
            node.declare_parameter(spec.name, spec.default, spec.descriptor(),
                                   ignore_override=True)
    return errors


def read(node: Node) -> Dict[str, Any]:
    """Return the current value of every parameter."""
    return {spec.name: node.get_parameter(spec.name).value for spec in SPECS}


def thresholds(values: Values) -> StateThresholds:
    """Build the state thresholds from parameter values (ValueError if inconsistent)."""
    return StateThresholds(
        uncertain_below=values['uncertain_threshold'], lost_below=values['lost_threshold'],
        recover_above=values['recover_threshold'], lost_after_frames=values['lost_after_frames'])


def tracker_options(values: Values) -> TrackerOptions:
    """Build the tracker options from parameter values (ValueError if inconsistent)."""
    return TrackerOptions(
        template_factor=values['template_factor'], search_factor=values['search_factor'],
        thresholds=thresholds(values),
        engine=EngineOptions(device=values['device'], precision=values['precision'],
                             cuda_graphs=values['cuda_graphs'],
                             crop_on_device=crop_on_device(values['crop_on_device']),
                             runtime=values['runtime']))


def crop_on_device(value: Any) -> Optional[bool]:
    """``EngineOptions.crop_on_device`` of the parameter: None for 'auto', else the bool."""
    return None if value == 'auto' else bool(value)


def check(values: Values, names: Optional[Sequence[str]] = None) -> List[str]:
    """Return the errors of the named values (default: all), with cross-parameter rules."""
    errors = [error for name in (names or SPEC_BY_NAME)
              if (error := SPEC_BY_NAME[name].check(values[name])) is not None]
    if not errors:
        try:
            tracker_options(values)
        except ValueError as exc:
            errors.append(str(exc))
    return errors


def set_callback(get_values: Callable[[], Values],
                 apply: Callable[[Dict[str, Any], Sequence[str]], None]
                 ) -> Callable[[List[Parameter]], SetParametersResult]:
    """Make an on-set-parameters callback that validates a change and then applies it.

    ``apply`` receives the full new value set and the names that were set. Parameters not
    declared here (use_sim_time, qos overrides) pass through. rclpy itself enforces types,
    ranges and read-only.
    """
    def callback(params: List[Parameter]) -> SetParametersResult:
        changed = {p.name: p.value for p in params if p.name in SPEC_BY_NAME}
        if not changed:
            return SetParametersResult(successful=True)
        values = {**get_values(), **changed}
        errors = check(values, list(changed))
        if errors:
            return SetParametersResult(successful=False, reason='; '.join(errors))
        apply(values, list(changed))
        return SetParametersResult(successful=True)
    return callback
