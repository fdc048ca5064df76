"""A restricted unpickler for checkpoints that hold objects of classes we do not have.

Official SimTrack/STARK training checkpoints (``SimTrack_ep0050.pth.tar``) pickle instances
of the training code's own classes (``lib.train.admin.settings.Settings``, ``AverageMeter``,
``NetConstructor``) and numpy scalars next to the weights. ``weights_only`` loading refuses
them, and plain unpickling would import those modules and run whatever the pickle names.

:func:`load` reads such a file with ``torch.load(..., weights_only=False,
pickle_module=RestrictedPickle())``. torch subclasses ``pickle_module.Unpickler`` and calls
our ``find_class`` for every global (it maps legacy ``torch.*Storage`` names itself; tensor
data comes through torch's ``persistent_load``). ``find_class`` returns only an allowlist of
harmless callables torch needs to rebuild tensors and containers. Any other global becomes an
inert placeholder class (:class:`SkippedObject`): calling it, ``__new__``, ``__setstate__``,
item and list state are only recorded, so nothing outside the allowlist is imported or called.
It is built on the pure-Python ``pickle._Unpickler`` so that ``BUILD`` (set an object's state)
can be refused for anything but instances of allowlisted classes and placeholders: a pickle
cannot patch the allowlisted classes and functions themselves.
"""
from __future__ import annotations

import _codecs
import collections
import io
import pickle
import types
from typing import Any, Dict, List, Tuple

import torch

_REBUILD_FUNCTIONS = (
    '_rebuild_tensor', '_rebuild_tensor_v2', '_rebuild_tensor_v3', '_rebuild_parameter',
    '_rebuild_parameter_with_state', '_rebuild_qtensor', '_rebuild_sparse_tensor',
    '_rebuild_meta_tensor_no_storage', '_rebuild_nested_tensor', '_rebuild_wrapper_subclass',
    '_rebuild_device_tensor_from_numpy', '_rebuild_device_tensor_from_cpu_tensor')


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    """Return the (module, name) -> object allowlist (mirrors torch's weights_only one)."""
    allowed: Dict[Tuple[str, str], Any] = {
        ('collections', 'OrderedDict'): collections.OrderedDict,
        ('collections', 'Counter'): collections.Counter,
        ('builtins', 'set'): set,
        ('builtins', 'frozenset'): frozenset,
        ('builtins', 'bytearray'): bytearray,
        ('builtins', 'complex'): complex,
        ('_codecs', 'encode'): _codecs.encode,  # protocol 2 writes bytes as encode(str)
        ('torch', 'Size'): torch.Size,
        ('torch', 'device'): torch.device,
        ('torch', 'Tensor'): torch.Tensor,
        ('torch._tensor', 'Tensor'): torch.Tensor,
        ('torch.nn.parameter', 'Parameter'): torch.nn.Parameter,
        ('torch.serialization', '_get_layout'): torch.serialization._get_layout,
        ('torch._tensor', '_rebuild_from_type_v2'): torch._tensor._rebuild_from_type_v2,
        ('torch.storage', 'UntypedStorage'): torch.storage.UntypedStorage,
        ('torch.storage', 'TypedStorage'): torch.storage.TypedStorage,
        ('torch', 'UntypedStorage'): torch.UntypedStorage,
    }
    for name in _REBUILD_FUNCTIONS:
        function = getattr(torch._utils, name, None)
        if function is not None:
            allowed[('torch._utils', name)] = function
    for name, value in vars(torch).items():
        if isinstance(value, (torch.dtype, torch.qscheme)):
            allowed[('torch', name)] = value
    for storage in torch._storage_classes:
        if storage not in (torch.storage.TypedStorage, torch.storage.UntypedStorage):
            try:  # legacy torch.FloatStorage etc., as torch's own loader maps them
                allowed[(storage.__module__, storage.__name__)] = (
                    torch.serialization.StorageType(storage.__name__))
            except KeyError:
                pass
    return allowed


_ALLOWED = _allowed_globals()
#: Classes whose instances may have their state set by ``BUILD`` (e.g. ``OrderedDict._metadata``).
_BUILD_TYPES = frozenset(v for v in _ALLOWED.values() if isinstance(v, type))


class SkippedObject:
    """An inert stand-in for an object whose class is not on the allowlist; runs no code.

    Subclasses are made per pickled (module, name); ``skipped_class`` names it. Whatever the
    pickle passes (constructor arguments, ``__setstate__`` state, list items, dict items) is
    kept as plain data on the instance and never interpreted.
    """

    skipped_class = ''

    def __new__(cls, *args: Any, **kwargs: Any) -> 'SkippedObject':
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        obj.list_items, obj.dict_items = [], {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Accept any arguments (already kept by ``__new__``)."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.list_items.append(item)

    def extend(self, items: Any) -> None:
        self.list_items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.dict_items[key] = value

    def __reduce__(self) -> Tuple[Any, ...]:
        raise pickle.PicklingError(f'{self.skipped_class} was skipped when loading; '
                                   'it cannot be saved again')

    def __repr__(self) -> str:
        return f'<skipped {self.skipped_class}>'


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickler whose ``find_class`` allows only :data:`_ALLOWED`; all else is a placeholder.

    Use it through :class:`RestrictedPickle`, whose per-load subclass provides the two tables.
    """

    #: Class names replaced by placeholders, in first-seen order.
    skipped: List[str]
    _placeholders: Dict[Tuple[str, str], type]

    def find_class(self, module: str, name: str) -> Any:
        key = (str(module), str(name))
        allowed = _ALLOWED.get(key)
        if allowed is not None:
            return allowed
        placeholder = self._placeholders.get(key)
        if placeholder is None:
            full = f'{key[0]}.{key[1]}'
            placeholder = type(key[1].rpartition('.')[2] or 'Skipped', (SkippedObject,),
                               {'skipped_class': full, '__module__': __name__})
            self._placeholders[key] = placeholder
            self.skipped.append(full)
        return placeholder

    def load_build(self) -> None:
        target = type(self.stack[-2])
        if not (target in _BUILD_TYPES or issubclass(target, SkippedObject)):
            raise pickle.UnpicklingError(f'refusing to set the state of a {target.__name__}')
        super().load_build()

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build


class RestrictedPickle(types.ModuleType):
    """A ``pickle_module`` for ``torch.load``: ``Unpickler``, ``load`` and ``skipped``.

    Make one per load: its ``skipped`` lists the placeholder classes that load created.
    """

    def __init__(self) -> None:
        super().__init__('simtrack_ros_restricted_pickle')
        self.skipped: List[str] = []
        self.Unpickler = type('Unpickler', (RestrictedUnpickler,),
                              {'skipped': self.skipped, '_placeholders': {}})

    def load(self, file: io.IOBase, **kwargs: Any) -> Any:
        return self.Unpickler(file, **kwargs).load()

    def loads(self, data: bytes, **kwargs: Any) -> Any:
        return self.load(io.BytesIO(data), **kwargs)


def load(path: Any) -> Tuple[Any, List[str]]:
    """Load ``path`` on the CPU with the restricted unpickler; returns (object, skipped)."""
    module = RestrictedPickle()
    obj = torch.load(path, map_location='cpu', weights_only=False, pickle_module=module)
    return obj, list(module.skipped)
