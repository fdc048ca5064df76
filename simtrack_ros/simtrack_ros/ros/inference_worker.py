"""Newest-frame-wins hand-off from the image callback to one inference thread.

The subscription callback only calls :meth:`InferenceWorker.submit`, which stores the frame
in a one-item slot; a frame still waiting there is replaced and counted as dropped. The
worker thread takes the newest frame whenever it is free, so the output never lags behind
the camera by more than one inference, however slow the model. Exceptions in the processing
function are passed to ``on_error`` and the thread carries on.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, Optional, TypeVar

T = TypeVar('T')


class LatestSlot(Generic[T]):
    """A one-item mailbox: put replaces (counting it in ``replaced``), take waits."""

    def __init__(self) -> None:
        self._item: Optional[T] = None
        self._ready = threading.Condition()
        self._closed = False
        self.replaced = 0

    def put(self, item: T) -> bool:
        """Store ``item``; True if it replaced one that was never taken."""
        with self._ready:
            replaced = self._item is not None
            self.replaced += replaced
            self._item = item
            self._ready.notify()
            return replaced

    def take(self, timeout: Optional[float] = None) -> Optional[T]:
        """Take the newest item (emptying the slot); None on timeout or close."""
        with self._ready:
            if self._item is None and not self._closed:
                self._ready.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake any waiting taker; later takes return what is left, then None."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def clear(self) -> None:
        """Drop a waiting item."""
        with self._ready:
            self._item = None


class InferenceWorker(Generic[T]):
    """One thread running ``process`` on the newest submitted frame.

    Args:
        process: called with each frame the thread takes.
        on_error: called with any exception ``process`` raises.
        min_period: seconds between the starts of two frames (0: no limit); read every frame
            so a parameter change applies at once.
        name: thread name.
    """

    def __init__(self, process: Callable[[T], None], on_error: Callable[[Exception], None],
                 min_period: Callable[[], float] = lambda: 0.0,
                 name: str = 'inference') -> None:
        self._process = process
        self._on_error = on_error
        self._min_period = min_period
        self._slot: LatestSlot[T] = LatestSlot()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._skipped = 0
        self.submitted = 0

    @property
    def dropped(self) -> int:
        """Frames never processed because a newer one arrived first."""
        return self._slot.replaced + self._skipped

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the thread to stop after its current frame and wait; True if it stopped."""
        self._stop.set()
        self._slot.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self._slot.clear()
        return not self._thread.is_alive()

    def submit(self, frame: T) -> None:
        """Hand over the newest frame (a frame not yet taken is dropped).

        Then yields the GIL, so the woken thread starts at once instead of waiting while the
        caller (an rclpy executor rebuilding its wait set) runs on: 0.5 ms -> 0.08 ms measured
        with rclpy 9.1.
        """
        self.submitted += 1
        self._slot.put(frame)
        time.sleep(0)

    def _run(self) -> None:
        next_start = 0.0
        while not self._stop.is_set():
            frame = self._slot.take(timeout=0.5)
            if frame is None or self._stop.is_set():
                continue
            period = self._min_period()
            if period > 0.0:
                delay = next_start - time.monotonic()
                if delay > 0.0:
                    if self._stop.wait(delay):
                        break
                    newer = self._slot.take(timeout=0.0)
                    if newer is not None:
                        self._skipped += 1
                        frame = newer
                next_start = time.monotonic() + period
            try:
                self._process(frame)
            except Exception as exc:  # noqa: B902 - must never kill the thread
                self._on_error(exc)
