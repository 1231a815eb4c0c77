"""Learning of SIGTERM/SIGINT before uvicorn's shutdown, so open streams end first.

uvicorn, told to stop, closes its sockets and then waits for every open response to finish
before it runs the lifespan's shutdown: an event stream never finishes by itself, so the
process would hang until killed. uvicorn installs its handlers with ``signal.signal`` before
the lifespan starts; the lifespan chains onto them here (ours runs, then uvicorn's), and
restores them when it ends. Where no Python handler is installed (not the main thread, or a
signal left to its default) nothing is chained: the lifespan's own shutdown still ends the
streams.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def chain_shutdown_signals(on_signal: Callable[[], None]) -> Callable[[], None]:
    """Run ``on_signal`` on the running loop when a stop signal arrives, before the handler
    that was installed; returns the function that puts the handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[int, Callable[[int, FrameType | None], object]] = {}
    for sig in SIGNALS:
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def chained(
            signum: int,
            frame: FrameType | None,
            previous: Callable[[int, FrameType | None], object] = previous,
        ) -> None:
            loop.call_soon_threadsafe(on_signal)
            previous(signum, frame)

        signal.signal(sig, chained)
        installed[sig] = previous

    def restore() -> None:
        for sig, previous in installed.items():
            signal.signal(sig, previous)

    return restore
