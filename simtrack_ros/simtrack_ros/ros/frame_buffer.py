"""A short ring buffer of recent frames, looked up by header stamp (for set_target).

The operator draws a box on a frame that is already old when the request arrives; the
template is cut from the buffered frame with that stamp. A zero stamp, or a stamp the buffer
no longer holds, gives the newest frame, and the :class:`Lookup` says which frame was used
and how long ago it arrived. Stamps are integer nanoseconds. Thread-safe.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
import threading
import time
from typing import Deque, Generic, Optional, Tuple, TypeVar

from simtrack_ros.ros.stamps import format_stamp, NS_PER_S as _NS_PER_S

T = TypeVar('T')
_NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class Lookup(Generic[T]):
    """A frame found for a requested stamp.

    Attributes:
        frame: the buffered frame.
        stamp_ns: its stamp.
        kind: ``'exact'``, ``'nearest'`` or ``'newest'`` (stamp zero, too old or ahead).
        message: which frame was used and why, in words.
        received_s_ago: seconds since the frame was pushed (monotonic clock).
    """

    frame: T
    stamp_ns: int
    kind: str
    message: str
    received_s_ago: float


class FrameBuffer(Generic[T]):
    """The last ``length`` (stamp, frame) pairs, oldest first.

    Args:
        length: number of frames kept (at least 1).
        tolerance_ns: a stamp up to this far outside the buffered range still matches the
            nearest frame instead of falling back to the newest.
        max_age_ns: stamps older than the newest frame by more than this give the newest
            frame (None: no limit beyond the buffer length).
    """

    def __init__(self, length: int, tolerance_ns: int = 10 * _NS_PER_MS,
                 max_age_ns: Optional[int] = None) -> None:
        if length < 1:
            raise ValueError(f'length must be at least 1, got {length}')
        self._frames: Deque[Tuple[int, T, float]] = collections.deque(maxlen=length)
        self._lock = threading.Lock()
        self.tolerance_ns = tolerance_ns
        self.max_age_ns = max_age_ns

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def length(self) -> int:
        """Capacity in frames."""
        return self._frames.maxlen or 0

    def resize(self, length: int) -> None:
        """Change the capacity, keeping the newest frames."""
        if length < 1:
            raise ValueError(f'length must be at least 1, got {length}')
        with self._lock:
            self._frames = collections.deque(self._frames, maxlen=length)

    def clear(self) -> None:
        """Forget every frame."""
        with self._lock:
            self._frames.clear()

    def push(self, stamp_ns: int, frame: T) -> bool:
        """Add the newest frame; True when time went backwards and the buffer was cleared.

        A stamp older than the newest buffered one (a bag restarting its loop, a clock reset)
        means the old frames belong to another time line, so they are dropped.
        """
        with self._lock:
            backwards = bool(self._frames) and stamp_ns < self._frames[-1][0]
            if backwards:
                self._frames.clear()
            self._frames.append((stamp_ns, frame, time.monotonic()))
            return backwards

    def newest(self) -> Optional[Tuple[int, T]]:
        """Return the newest stamp and frame as a pair, or None when empty."""
        with self._lock:
            return self._frames[-1][:2] if self._frames else None

    def lookup(self, stamp_ns: int) -> Optional[Lookup[T]]:
        """Find the frame for ``stamp_ns`` (see the module docstring); None when empty."""
        with self._lock:
            frames = list(self._frames)
        if not frames:
            return None
        now = time.monotonic()
        newest_ns, newest, newest_at = frames[-1]
        oldest_ns = frames[0][0]
        used = f'the newest frame (stamp {format_stamp(newest_ns)})'

        def use_newest(why: str) -> Lookup[T]:
            return Lookup(newest, newest_ns, 'newest', f'{why}: used {used}', now - newest_at)
        if stamp_ns == 0:
            return use_newest('zero stamp')
        requested = f'stamp {format_stamp(stamp_ns)}'
        age_ns = newest_ns - stamp_ns
        if self.max_age_ns is not None and age_ns > self.max_age_ns:
            return use_newest(f'{requested} is {age_ns / _NS_PER_S:.3f} s older than the newest '
                              f'frame (limit {self.max_age_ns / _NS_PER_S:.3f} s)')
        if stamp_ns < oldest_ns - self.tolerance_ns:
            return use_newest(f'{requested} is older than the {len(frames)} buffered frames '
                              f'(oldest {format_stamp(oldest_ns)})')
        if stamp_ns > newest_ns + self.tolerance_ns:
            return use_newest(f'{requested} is {-age_ns / _NS_PER_MS:.1f} ms ahead of the '
                              'newest frame')
        found_ns, frame, found_at = min(frames, key=lambda item: abs(item[0] - stamp_ns))
        if found_ns == stamp_ns:
            return Lookup(frame, found_ns, 'exact', f'used the frame with {requested}',
                          now - found_at)
        return Lookup(frame, found_ns, 'nearest',
                      f'no frame with {requested}: used the nearest, stamp '
                      f'{format_stamp(found_ns)} ({abs(found_ns - stamp_ns) / _NS_PER_MS:.1f} '
                      'ms away)', now - found_at)
