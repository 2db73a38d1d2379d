"""Testing kit: virtual time, event capture, mock services and chaos injection."""

from actors.resilience._retry import retry_testing_mode
from actors.testing._capture import capture_events
from actors.testing._clock import VirtualClockEventLoop, virtual_time_backend

__all__ = ["VirtualClockEventLoop", "capture_events", "retry_testing_mode", "virtual_time_backend"]
