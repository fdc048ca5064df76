"""The life of a process that runs ROS nodes: SIGINT or SIGTERM stop it in order, exit 0.

rclpy's default signal handlers shut the context down inside the signal (SIGINT then also
raises ``KeyboardInterrupt`` wherever the main thread happens to be). The nodes' own threads
(the tracker's inference thread) still publish on the dead context (``RCLError: publisher's
context is invalid``), and a second SIGINT during the shutdown (``ros2 launch`` forwards SIGINT
to a node that the process-group signal already reached) aborts the shutdown itself: the
interpreter then exits while the inference thread is still inside torch, and the C++ runtime
aborts the process (``terminate called without an active exception``, exit -6).

:class:`NodeProcess` initialises rclpy without its signal handlers and installs its own for
SIGINT and SIGTERM that only note the signal: no lock, no I/O, nothing raised. The main thread
spins in short slices, sees the note and leaves the spin loop; only then are the nodes
destroyed (each stops its own threads and timers first), the executor shut down and the context
shut down. Further signals are ignored, so nothing interrupts the shutdown, and the process
exits with status 0.

One single-threaded executor spins every node: the tracker infers on its own thread, so every
executor callback is short. rclpy's MultiThreadedExecutor is avoided on purpose: it re-submits
callbacks waiting in its pool, which at high image rates holds the GIL for up to a second at a
time (measured with rclpy 9.1 at 500 Hz; a 30 Hz camera reached the tracker at 1.6 fps).
"""
from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Callable, List, Optional, Sequence, TypeVar

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

N = TypeVar('N', bound=Node)
R = TypeVar('R')
#: The signals that stop the process.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Longest time the main thread waits in rclpy before it looks for a stop signal.
SPIN_SLICE_S = 0.1


def help_requested(args: Optional[Sequence[str]] = None) -> bool:
    """Return whether the command line (``None``: ``sys.argv``) asks for ``-h``/``--help``.

    Only arguments outside ``--ros-args ... --`` count, so a node's own help does not start it.
    """
    argv = sys.argv if args is None else list(args)
    return any(a in ('-h', '--help') for a in remove_ros_args(argv)[1:])


class NodeProcess:
    """rclpy for one process: its context, one executor, the nodes, and how they stop.

    Use as a context manager around creating the nodes (:meth:`add`) and :meth:`spin` (or
    :meth:`spin_while`); leaving it destroys the nodes in reverse order, then shuts the executor
    and the context down, and leaves SIGINT and SIGTERM ignored until the process exits, so a
    late signal cannot interrupt the exit either: this is for a program's main function.
    ``stopping`` (a ``threading.Event``) is set once spinning ends: threads of the program wait
    on it.

    Args:
        name: logger name for the stop messages (the program's name).
        args: command-line arguments for rclpy (``None``: ``sys.argv``).
    """

    def __init__(self, name: str, args: Optional[Sequence[str]] = None) -> None:
        self.context = Context()
        self.stopping = threading.Event()
        self._logger = get_logger(name)
        self._args = None if args is None else list(args)
        self._signal: Optional[str] = None
        self._ignored: List[str] = []
        self._nodes: List[Node] = []
        self._executor: Optional[SingleThreadedExecutor] = None

    def __enter__(self) -> NodeProcess:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        rclpy.init(args=self._args, context=self.context,
                   signal_handler_options=SignalHandlerOptions.NO)
        self._executor = SingleThreadedExecutor(context=self.context)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        for node in reversed(self._nodes):
            node.destroy_node()
        self._nodes.clear()
        self._executor.shutdown()
        if self._ignored:
            self._logger.info(f'ignored {", ".join(self._ignored)} while stopping')
        rclpy.try_shutdown(context=self.context)
        # Python gives these signals their default action back while it finalises, so a late
        # one would kill the exiting process (status -2): ignore them from here to the exit.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        # Runs in the main thread between two bytecodes: only note the signal (lock-free).
        name = signal.Signals(signum).name
        if self._signal is None and not self.stopping.is_set():
            self._signal = name
        else:
            self._ignored.append(name)

    def add(self, node: N) -> N:
        """Spin ``node`` with the process's executor; it is destroyed on leaving."""
        self._nodes.append(node)
        self._executor.add_node(node)
        return node

    @property
    def stop_signal(self) -> Optional[str]:
        """Name of the signal that stopped the process (``'SIGINT'``, ``'SIGTERM'``), else None."""
        return self._signal

    def spin(self) -> None:
        """Execute the nodes' callbacks until a stop signal, ``stopping`` or a shut-down context.

        Must run in the main thread, where Python runs signal handlers. Sets ``stopping``.
        """
        while self._signal is None and not self.stopping.is_set() and self.context.ok():
            self._executor.spin_once(timeout_sec=SPIN_SLICE_S)
        if self._signal is not None:
            self._logger.info(f'{self._signal}: stopping')
        self.stopping.set()

    def spin_while(self, work: Callable[[threading.Event], R]) -> R:
        """Spin while ``work(stopping)`` runs in a thread; return its result or raise its error.

        Spinning ends when ``work`` returns or on a stop signal; ``work`` must return soon
        after ``stopping`` is set. It has ended before the nodes are destroyed, so it never
        uses a destroyed node.
        """
        outcome: List[R] = []
        failure: List[BaseException] = []

        def run() -> None:
            try:
                outcome.append(work(self.stopping))
            except BaseException as error:  # noqa: B902 - handed to the main thread
                failure.append(error)
            finally:
                self.stopping.set()

        thread = threading.Thread(target=run, name='work')
        thread.start()
        self.spin()
        thread.join()
        if failure:
            raise failure[0]
        return outcome[0]
