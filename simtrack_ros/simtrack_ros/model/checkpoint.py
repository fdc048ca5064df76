"""Checkpoints of official SimTrack, OpenAI CLIP and our format: read, translate, load.

* **Read** (:func:`read_checkpoint`): ``torch.load(weights_only=True)``, so a checkpoint cannot
  run code. Other pickled objects (an official training checkpoint's ``settings``/``stats``,
  numpy scalars) are read by the same loader as inert :class:`Placeholder` objects, registered
  through ``torch.serialization.safe_globals``. CLIP's TorchScript archive: ``torch.jit.load``.
* **Translate** (pure functions, like timm's ``checkpoint_filter_fn``): :func:`unwrap_state_dict`,
  :func:`clip_visual_state`, :func:`reorder_classes`.
* **Load**: the box part must fit the model exactly, else CheckpointError naming every missing,
  unexpected and mis-shaped key; tensors are cast to fp32; the class part loads when it fits.

Our format is a dict::

    {'format': 'simtrack_ros', 'format_version': 1, 'config': {...}, 'class_names': [...],
     'trained_heads': [...], 'metadata': {...}, 'state_dict': {...}}

plus, in a training checkpoint (``simtrack-finetune``), ``'training'``: the run's optimizer,
schedule and random-number states (plain data and tensors), which the loaders here ignore.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import pickle
import pickletools
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
import uuid
import warnings
import zipfile

import torch

from simtrack_ros.challenges import reorder_index
from simtrack_ros.model.challenge_calibration import ChallengeCalibration
from simtrack_ros.model.challenge_head import CLASS_STREAM_PREFIXES
from simtrack_ros.model.config import SimTrackConfig
from simtrack_ros.model.load_report import CheckpointError, LoadReport
from simtrack_ros.model.simtrack import build_model, HEAD_NAMES, SimTrack

FORMAT_NAME = 'simtrack_ros'
FORMAT_VERSION = 1
DEFAULT_CONFIG = 'simtrack-b16'
_WRAPPER_KEYS = ('net', 'state_dict', 'model')
_CLASSIFIER_KEYS = ('classifier.weight', 'classifier.bias')
PathLike = Union[str, 'os.PathLike[str]']
StateDict = Dict[str, torch.Tensor]


def _short(exc: BaseException, limit: int = 160) -> str:
    """Exception type and the first sentence of its first informative line, cut between words.

    torch's weights_only preamble is skipped; what follows the first sentence (e.g. miniz's
    "This is an internal miniz error ...") is dropped.
    """
    lines = [line.strip() for line in str(exc).splitlines()
             if line.strip() and not line.startswith('Weights only load failed')]
    text = re.split(r'(?<=[.!?])\s+(?=[A-Z])', lines[0])[0].rstrip('.') if lines else ''
    if len(text) > limit:
        text = text[:limit].rsplit(' ', 1)[0].rstrip(',;:') + ' ...'
    return f'{type(exc).__name__}: {text}' if text else type(exc).__name__


class Placeholder:
    """An inert stand-in for a pickled object whose class or function torch does not allow.

    :func:`read_checkpoint` registers one subclass per such global (``pickled_name``); what the
    pickle passes to it (call arguments, ``__setstate__`` state) is kept as data, never run.
    """

    pickled_name = ''
    #: The read's list of pickled names that were instantiated (set on each subclass).
    created: List[str]
    args: Tuple[Any, ...]
    state: Any

    def __new__(cls, *args: Any) -> 'Placeholder':
        if cls.pickled_name not in cls.created:
            cls.created.append(cls.pickled_name)
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f'<placeholder for {self.pickled_name}>'


def _pickled_globals(path: PathLike) -> List[str]:
    """Globals named in the file's pickle, found statically (nothing is imported or run).

    A zip file (``torch.save`` since torch 1.6): those weights_only loading refuses. The legacy
    format: all of them (torch's allowed ones take precedence over placeholders).
    """
    with open(path, 'rb') as stream:
        if stream.read(4) == b'PK\x03\x04':
            stream.seek(0)
            return torch.serialization.get_unsafe_globals_in_checkpoint(stream)
        stream.seek(0)  # legacy: magic number, protocol, system info, then the object
        ops = [list(pickletools.genops(stream)) for _ in range(4)][-1]
    return [str(arg).replace(' ', '.') for op, arg, _pos in ops if op.name == 'GLOBAL']


def _damage(path: PathLike) -> str:
    """Say what is wrong with a file that torch cannot read, judged from its bytes."""
    try:
        with open(path, 'rb') as stream:
            head = stream.read(4)
    except OSError as exc:
        return f'cannot be read: {exc.strerror or exc}'
    if not head:
        return 'the file is empty'
    if head == b'PK\x03\x04':
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):  # a damaged or missing end record
            return 'truncated or corrupt: the zip archive is incomplete'
        if not any(name.endswith('data.pkl') for name in names):
            return 'a zip archive, but not one written by torch.save'
        return 'corrupt: a record in the zip archive is damaged'
    return 'truncated, corrupt or not written by torch.save'


def _unreadable(path: PathLike, exc: BaseException) -> CheckpointError:
    """Return the error for a file torch cannot read: what is wrong, what to do, the cause."""
    return CheckpointError(f'checkpoint {path}: not a readable PyTorch file ({_damage(path)}); '
                           f'copy or download it again [{_short(exc)}]')


def read_checkpoint(path: PathLike) -> Tuple[Any, List[str]]:
    """Read a ``torch.save`` file: (object, names replaced by placeholders); no code runs.

    The placeholders are registered with torch only during the read (process-wide, as
    ``torch.serialization.safe_globals`` is).
    """
    if not Path(path).is_file():
        raise CheckpointError(f'checkpoint {path}: no such file')
    try:
        names = _pickled_globals(path)
    except Exception as exc:  # not a pickle that torch wrote
        raise _unreadable(path, exc) from None
    created: List[str] = []
    stand_ins = [(type(name.rpartition('.')[2] or 'Placeholder', (Placeholder,),
                       {'pickled_name': name, 'created': created}), name) for name in names]
    try:
        with torch.serialization.safe_globals(stand_ins):
            obj = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:  # e.g. a global of a module torch always blocks
        what = f' even with {", ".join(names)} as inert placeholders' if names else ''
        raise CheckpointError(f'checkpoint {path}: weights_only loading refuses it{what}; no '
                              f'code ran [{_short(exc)}]') from None
    except Exception as exc:  # torch raises many types for corrupt files
        raise _unreadable(path, exc) from None
    if isinstance(obj, Placeholder):
        raise CheckpointError(f'checkpoint {path}: it holds a {obj.pickled_name} object, not '
                              'weights (it was not loaded: no code ran)')
    return obj, created


def _is_torchscript(path: PathLike) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith('/constants.pkl') for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_clip_archive(path: PathLike) -> StateDict:
    """State dict of CLIP's TorchScript archive (not weights_only-safe: trusted files only)."""
    try:
        with warnings.catch_warnings():  # torch.jit is deprecated; CLIP ships TorchScript
            warnings.simplefilter('ignore', DeprecationWarning)
            return torch.jit.load(str(path), map_location='cpu').state_dict()
    except Exception as exc:  # TorchScript raises RuntimeError and more
        raise CheckpointError(f'checkpoint {path}: cannot load TorchScript archive '
                              f'[{_short(exc)}]') from None


def _skipped_notes(skipped: Sequence[str]) -> List[str]:
    return [f'skipped non-tensor objects: {", ".join(skipped)}'] if skipped else []


def unwrap_state_dict(obj: Any, source: str = '', skipped: Sequence[str] = ()) -> StateDict:
    """Return the flat state dict inside ``obj`` (its tensors, keys as strings).

    Unwraps ``net``/``state_dict``/``model`` and strips a ``module.`` prefix. The error names
    the ``skipped`` placeholders, if any.
    """
    while isinstance(obj, Mapping):
        inner = [k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
        if not inner or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        obj = obj[inner[0]]
    note = f' ({_skipped_notes(skipped)[0]})' if skipped else ''
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f'checkpoint {source}: no state dict found '
                              f'(got {type(obj).__name__}){note}')
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f'checkpoint {source}: no tensors found (keys: {list(obj)[:8]})'
                              f'{note}')
    if all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state


def clip_visual_state(state: Mapping[str, torch.Tensor], source: str = '') -> StateDict:
    """Return CLIP's image tower in a CLIP or SimTrack state dict, keys relative to it."""
    prefix = next((p for p in ('backbone.visual.', 'visual.', '') if p + 'conv1.weight' in state),
                  None)
    if prefix is None:
        raise CheckpointError(f'{source}: no CLIP image tower (visual.conv1.weight) found')
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def reorder_classes(state: StateDict, source: Sequence[str], target: Sequence[str],
                    where: str = '') -> StateDict:
    """Put the classifier rows of ``state``, trained in ``source`` class order, in ``target``'s."""
    try:
        index = reorder_index(source, target)
    except ValueError as exc:
        raise CheckpointError(f'{where}: classes do not match the config: {exc}') from None
    if list(index) == list(range(len(index))):
        return state
    return {k: v[index] if k in _CLASSIFIER_KEYS else v for k, v in state.items()}


def _describe(state: Mapping[str, torch.Tensor], prefix: str = 'backbone.visual.') -> str:
    conv = state.get(prefix + 'conv1.weight')
    if conv is None:
        return 'no patch embedding'
    blocks = prefix + 'transformer.resblocks.'
    layers = len({k[len(blocks):].split('.')[0] for k in state if k.startswith(blocks)})
    return f'width {conv.shape[0]}, patch {conv.shape[-1]}, {layers} layers'


def _config_text(config: SimTrackConfig) -> str:
    return (f'config {config.name!r} (width {config.width}, patch {config.patch_size}, '
            f'{config.layers} layers)')


def _fit(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
         report: LoadReport) -> StateDict:
    """Record ``own``'s missing and mis-shaped keys in ``report``; return what fits, in fp32."""
    loadable: StateDict = {}
    for key, ref in own.items():
        value = state.get(key)
        if value is None:
            if not key.endswith('num_batches_tracked'):
                report.missing.append(key)
        elif tuple(value.shape) != tuple(ref.shape):
            report.mismatched.append((key, tuple(ref.shape), tuple(value.shape)))
        else:
            loadable[key] = value.float() if value.is_floating_point() else value
    return loadable


def _fail(report: LoadReport, what: str, hint: str) -> None:
    if report.missing or report.mismatched:
        details = '\n'.join(report.problems(limit=8))
        raise CheckpointError(f'{report.source}: {what} does not fit the model: {hint}\n{details}')


def _split(state: Mapping[str, torch.Tensor], class_part: bool) -> StateDict:
    return {k: v for k, v in state.items() if k.startswith(CLASS_STREAM_PREFIXES) == class_part}


def _load_state(model: SimTrack, state: StateDict, report: LoadReport,
                class_required: bool) -> bool:
    """Load the box part strictly and the class part if it fits; True if the class part loaded."""
    own = model.state_dict()
    loadable = _fit(_split(own, False), state, report)
    report.unexpected.extend(k for k in state if k not in own)
    _fail(report, 'the tracking (box) part',
          f'checkpoint has {_describe(state)}; model is {_config_text(model.config)}')
    class_state = _split(state, True)
    class_loaded = False
    if class_state:
        sub = LoadReport(source=report.source)
        class_loadable = _fit(_split(own, True), class_state, sub)
        if 'fusion_layer.weight' in sub.missing:
            sub.missing = [k for k in sub.missing if not k.startswith('fusion_layer.')]
            report.notes.append('no fusion_layer in the checkpoint: it stays zero (identity)')
        if class_required:
            _fail(sub, 'the classification part', f'model is {_config_text(model.config)}')
        if sub.missing or sub.mismatched:
            report.notes.append('classification weights skipped (wrong shapes): '
                                + '; '.join(sub.problems(limit=4)))
        else:
            loadable.update(class_loadable)
            class_loaded = True
    if 'fusion_layer.weight' in report.unexpected:
        report.notes.append('the checkpoint was trained with fusion but the config has fusion '
                            'off: its boxes will differ from the trained model')
    model.load_state_dict(loadable, strict=False)
    report.loaded = len(loadable)
    return class_loaded


def _read_state(obj: Union[Mapping[str, Any], PathLike], source: str
                ) -> Tuple[str, StateDict, List[str]]:
    """(source, flat state dict, notes) of a mapping or a file."""
    skipped: List[str] = []
    if not isinstance(obj, Mapping):
        source = source or str(obj)
        obj, skipped = read_checkpoint(obj)
    source = source or 'state dict'
    return source, unwrap_state_dict(obj, source, skipped), _skipped_notes(skipped)


def load_official_state_dict(model: SimTrack, obj: Union[Mapping[str, Any], PathLike],
                             class_names: Optional[Sequence[str]] = None,
                             source: str = '') -> LoadReport:
    """Load an official SimTrack state dict (or a file holding one) into ``model``.

    Accepts a flat state dict, ``net``/``state_dict``/``model`` wrappers and a ``module.``
    prefix; a missing ``num_batches_tracked`` is tolerated; tensors are cast to fp32. The box
    part must load completely, else CheckpointError. Classification keys (a guide-style flat
    checkpoint) are loaded only when ``class_names`` gives the order they were trained in.
    Sets ``model.trained_heads``.
    """
    source, state, notes = _read_state(obj, source)
    report = LoadReport(source=source, notes=notes)
    if _split(state, True):
        if class_names is None:
            state = _split(state, False)
            report.notes.append('classification weights skipped: the file does not record its '
                                'class order (pass class_names)')
        else:
            state = reorder_classes(state, class_names, model.class_names, source)
    class_loaded = _load_state(model, state, report, class_required=False)
    model.trained_heads = {'box', 'cls'} if class_loaded else {'box'}
    if not class_loaded:
        report.notes.append('classification head untrained')
    return report


def load_clip_weights(model: SimTrack, path: Union[PathLike, Mapping[str, Any]],
                      source: str = '') -> LoadReport:
    """Load OpenAI CLIP image-tower weights (``visual.*``) into ``model.backbone.visual``.

    Accepts CLIP's official TorchScript archive (e.g. ``ViT-B-16.pt``), read with
    ``torch.jit.load``: that is the official distribution format but, unlike
    ``weights_only`` loading, it is not restricted to plain data, so use trusted files only.
    Also accepts a plain state dict (file or mapping). The heads stay untrained.
    """
    if not isinstance(path, Mapping) and _is_torchscript(path):
        source, state, notes = source or str(path), _read_clip_archive(path), []
    else:
        source, state, notes = _read_state(path, source)
    visual = clip_visual_state(state, source)
    report = LoadReport(source=source, notes=notes)
    own = model.backbone.visual.state_dict()
    loadable = _fit(own, visual, report)
    report.unexpected.extend(k for k in visual if k not in own)
    _fail(report, 'the CLIP image tower',
          f'checkpoint has {_describe(visual, "")}; model is {_config_text(model.config)}')
    if len(state) > len(visual):
        report.notes.append(f'ignored {len(state) - len(visual)} tensors outside the image tower')
    model.backbone.visual.load_state_dict(loadable)
    report.loaded = len(loadable)
    return report


def _load_ours(obj: Mapping[str, Any], source: str, config: Optional[SimTrackConfig]
               ) -> Tuple[SimTrack, LoadReport]:
    version = obj.get('format_version')
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f'{source}: format_version {version!r} is not supported '
                              f'(this code reads up to {FORMAT_VERSION})')
    try:
        stored = SimTrackConfig.from_dict(dict(obj['config']))
        class_names = list(obj['class_names'])
        state = dict(obj['state_dict'])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f'{source}: malformed simtrack_ros checkpoint [{_short(exc)}]'
                              ) from None
    config = config or stored
    model = build_model(config)
    report = LoadReport(source=source, metadata=dict(obj.get('metadata') or {}))
    state = reorder_classes(state, class_names, config.class_names, source)
    if class_names != list(config.class_names):
        report.notes.append('class order differs from the config: classifier rows reordered')
    class_loaded = _load_state(model, state, report, class_required=True)
    heads = set(obj.get('trained_heads', ())) & set(HEAD_NAMES)
    if stored.multi_label != config.multi_label:
        report.notes.append(f'class head trained with multi_label={stored.multi_label}, config '
                            f'has {config.multi_label}: treated as untrained')
        heads.discard('cls')
    if not class_loaded:
        heads.discard('cls')
    model.trained_heads = heads
    model.challenge_calibration = _calibration(obj, model, report)
    return model, report


def _calibration(obj: Mapping[str, Any], model: SimTrack, report: LoadReport
                 ) -> Optional[ChallengeCalibration]:
    """Return the checkpoint's challenge calibration if it fits the model's trained head.

    None otherwise, with a note in ``report`` saying why it is not used.
    """
    data = obj.get('challenge_calibration')
    if data is None:
        return None
    try:
        calibration = ChallengeCalibration.from_dict(data)
    except ValueError as exc:
        report.notes.append(f"{exc}: the head's own probabilities are used")
        return None
    if calibration.class_names != tuple(model.class_names):
        report.notes.append(f'challenge calibration ignored: fitted for classes '
                            f'{calibration.class_names}, the model has {model.class_names}')
        return None
    if not model.cls_head_trained or not model.config.multi_label:
        report.notes.append('challenge calibration ignored: it needs the trained multi-label '
                            'head it was fitted on')
        return None
    return calibration


def load_checkpoint(path: PathLike, config: Optional[SimTrackConfig] = None,
                    class_names: Optional[Sequence[str]] = None
                    ) -> Tuple[SimTrack, LoadReport]:
    """Build a model and load any supported checkpoint file into it.

    Detects our format (its stored config is used unless ``config`` is given), an official
    SimTrack state dict (``config`` defaults to SimTrack-B/16; ``class_names`` as in
    :func:`load_official_state_dict`) and OpenAI CLIP weights (image tower only).
    The model is returned in eval mode.
    """
    source = str(path)
    if _is_torchscript(path):
        model = build_model(config or DEFAULT_CONFIG)
        return model.eval(), load_clip_weights(model, path)
    obj, skipped = read_checkpoint(path)
    if isinstance(obj, Mapping) and obj.get('format') == FORMAT_NAME:
        model, report = _load_ours(obj, source, config)
    else:
        state = unwrap_state_dict(obj, source, skipped)
        official = any(k.startswith('backbone.') for k in state)
        if not official and not any(k.startswith('visual.') for k in state):
            raise CheckpointError(f'{source}: unrecognised checkpoint layout '
                                  f'(first keys: {", ".join(list(state)[:5])})')
        model = build_model(config or DEFAULT_CONFIG)
        report = (load_official_state_dict(model, state, class_names, source) if official
                  else load_clip_weights(model, state, source))
    report.notes[:0] = _skipped_notes(skipped)
    return model.eval(), report


def _atomic_save(payload: Any, path: PathLike) -> Path:
    """Write to a unique temporary sibling, fsync it, rename it over ``path``, fsync the folder.

    A crash at any point leaves the previous file at ``path`` whole (at worst a stale
    ``.<name>.<pid>.<hex>.tmp`` sibling remains).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A unique sibling created with open() (not mkstemp), so the file mode follows the umask.
    temp = target.with_name(f'.{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    try:
        with open(temp, 'xb') as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)
    return target


def save_checkpoint(model: SimTrack, path: PathLike,
                    metadata: Optional[Mapping[str, Any]] = None,
                    training: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model`` in our format (atomically: temp file, then rename).

    ``training`` (a training run's state: plain data and tensors that ``weights_only``
    loading accepts) is stored under ``'training'``.
    """
    metadata = dict(metadata or {})
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'metadata must be plain JSON-like data: {exc}') from None
    payload = {
        'format': FORMAT_NAME,
        'format_version': FORMAT_VERSION,
        'config': model.config.to_dict(),
        'class_names': list(model.class_names),
        'trained_heads': sorted(model.trained_heads),
        'metadata': metadata,
        'state_dict': {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if model.challenge_calibration is not None:
        payload['challenge_calibration'] = model.challenge_calibration.to_dict()
    if training is not None:
        payload['training'] = dict(training)
    return _atomic_save(payload, path)


def official_state_dict(model: SimTrack) -> StateDict:
    """Return the official SimTrack box part of ``model`` (218 keys for B/16), on the CPU."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()
            if not k.startswith(CLASS_STREAM_PREFIXES)}


def save_official_state_dict(model: SimTrack, path: PathLike) -> Path:
    """Write the official flat state dict of the box part (atomically)."""
    return _atomic_save(official_state_dict(model), path)
