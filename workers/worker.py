"""Placeholder until the event-pipeline issue: runs, logs, and stops on SIGTERM."""

import asyncio
import logging
import signal

from shared.logs import configure_logging
from shared.settings import load_settings


async def main() -> None:
    configure_logging(load_settings())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger(__name__).info("worker placeholder running")
    await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
