"""Shared fixtures for tests that use real rclpy in one process.

* ``ros_domain_id`` (session): a ROS domain id for this test session (``SIMTRACK_TEST_DOMAIN_ID``
  or one derived from the process id), exported with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``
  so concurrent sessions on one machine do not hear each other.
* ``ros_context``: a fresh, initialised ``rclpy.Context`` per test, shut down afterwards.
* ``ros``: a :class:`RosHarness` spinning a MultiThreadedExecutor in a background thread,
  with helpers to subscribe, publish, call services and wait for conditions.

The test process tunes malloc as the node's entry point does (``allocator_tuning``), so the
in-process node tests (memory under overload among them) run the way the node runs.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any, Callable, List, TypeVar

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.task import Future

from simtrack_ros.allocator_tuning import tune_allocator_for_images

T = TypeVar('T')
_names = itertools.count()
#: Seconds for in-flight executor handlers to finish before the executor is shut down.
_SETTLE_S = 0.1


def pytest_configure(config: pytest.Config) -> None:
    tune_allocator_for_images()
    config.addinivalue_line(
        'filterwarnings', "ignore:module 'sre_parse' is deprecated:DeprecationWarning")
    config.addinivalue_line(
        'filterwarnings', "ignore:module 'sre_constants' is deprecated:DeprecationWarning")


@pytest.fixture(scope='session')
def ros_domain_id() -> int:
    """Pick the ROS domain id of this session (also exported for child processes)."""
    domain = int(os.environ.get('SIMTRACK_TEST_DOMAIN_ID', 1 + os.getpid() % 200))
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    return domain


@pytest.fixture
def ros_context(ros_domain_id: int):
    """Provide a fresh rclpy context on the session's domain."""
    context = Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    yield context
    rclpy.try_shutdown(context=context)


class _Spinner:
    """One node spun by its own executor in a background thread."""

    def __init__(self, node: Node, context: Context, multi_threaded: bool) -> None:
        self.node = node
        self.executor = (MultiThreadedExecutor(num_threads=4, context=context) if multi_threaded
                         else SingleThreadedExecutor(context=context))
        self.executor.add_node(node)
        self._stop = Future()
        self._thread = threading.Thread(
            target=self.executor.spin_until_future_complete, args=(self._stop,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set_result(True)
        self._thread.join(timeout=5.0)
        # rclpy's Executor.shutdown destroys its guard condition without waiting for handlers
        # still queued in the thread pool; let them finish first (they print errors otherwise).
        time.sleep(_SETTLE_S)
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()


class RosHarness:
    """Background executors plus helpers for one test.

    Every node gets its own executor and thread, as if it ran in its own process (one shared
    executor would couple the test client's load to the node under test). Single-threaded by
    default: rclpy's MultiThreadedExecutor re-submits callbacks that wait in its thread pool,
    which under a high message rate holds the GIL for up to a second at a time. Every harness
    has its own ``namespace`` so endpoints of earlier tests cannot interfere.
    """

    def __init__(self, context: Context) -> None:
        self.context = context
        self.namespace = f'/t{os.getpid()}_{next(_names)}'
        self._spinners: List[_Spinner] = []
        self.client = self.add(Node('test_client', namespace=self.namespace, context=context))

    def add(self, node: T, multi_threaded: bool = False) -> T:
        """Spin ``node`` with its own executor; it is destroyed at the end of the test."""
        self._spinners.append(_Spinner(node, self.context, multi_threaded))
        return node

    def topic(self, name: str) -> str:
        """``name`` inside the harness namespace."""
        return f'{self.namespace}/{name}'

    def subscribe(self, msg_type: Any, topic: str, qos: Any = 10) -> List[Any]:
        """Return a list that collects every message received on ``topic``."""
        received: List[Any] = []
        self.client.create_subscription(msg_type, topic, received.append,
                                        qos if isinstance(qos, QoSProfile) else int(qos))
        return received

    def publisher(self, msg_type: Any, topic: str, qos: Any = 10):
        """Create a publisher on the client node."""
        return self.client.create_publisher(msg_type, topic, qos)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        """Call a service and return the response (AssertionError on timeout)."""
        client = self.client.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f'no service {name}'
            future = client.call_async(request)
            assert self.wait_for(future.done, timeout), f'{name}: no response in {timeout} s'
            return future.result()
        finally:
            self.client.destroy_client(client)

    @staticmethod
    def wait_for(condition: Callable[[], Any], timeout: float = 10.0,
                 interval: float = 0.01) -> bool:
        """Poll ``condition`` until it is truthy or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            if condition():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)

    def wait_for_subscribers(self, publisher: Any, count: int = 1,
                             timeout: float = 10.0) -> bool:
        """Wait until ``publisher`` is matched with at least ``count`` subscriptions."""
        return self.wait_for(lambda: publisher.get_subscription_count() >= count, timeout)

    def close(self) -> None:
        """Stop spinning and destroy every node."""
        for spinner in reversed(self._spinners):
            spinner.close()


@pytest.fixture
def ros(ros_context: Context):
    """Provide a :class:`RosHarness` for one test."""
    harness = RosHarness(ros_context)
    yield harness
    harness.close()
