"""Events between Nebula's processes: Redis pub/sub, or an in-process bus for one process.

Publishers and subscribers depend on the ``EventBus`` protocol only; the runtimes choose the
implementation with ``connect``. This package never stores events and never carries state a
late subscriber would need.
"""

from nebula.events.bus import Event, EventBus, InProcessBus, RedisBus, Subscription, connect

__all__ = ["Event", "EventBus", "InProcessBus", "RedisBus", "Subscription", "connect"]
