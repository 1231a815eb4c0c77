"""Run the real entry points (``python -m …``) as subprocesses with a test's settings."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from tools.harness.names import ROOT, environment
from tools.harness.processes import UVICORN_ARGS, free_port

START_WITHIN_S = 30  # importing the app takes seconds while other suites load the machine

Process = asyncio.subprocess.Process
RunModule = Callable[..., Awaitable[Process]]


@asynccontextmanager
async def running_modules(log_dir: Path) -> AsyncIterator[RunModule]:
    """``run("workers.worker", settings, *args, log="name")`` starts ``python -m module args``,
    logging to ``log_dir/<log>.log``; every process started is killed on exit."""
    started: list[Process] = []

    async def run(module: str, settings: Settings, *args: str, log: str | None = None) -> Process:
        # The child holds its own copy of the file; the parent's is closed once it started.
        with (log_dir / f"{log or module}.log").open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                *args,
                cwd=ROOT,
                env=environment(settings),
                stdout=log_file,
                stderr=log_file,
            )
        started.append(process)
        return process

    try:
        yield run
    finally:
        for process in started:
            if process.returncode is None:
                process.kill()
                await process.wait()


@pytest.fixture
async def run_module(tmp_path: Path) -> AsyncIterator[RunModule]:
    """``running_modules`` for one test, logging to its ``tmp_path``."""
    async with running_modules(tmp_path) as run:
        yield run


async def start_api(
    run: RunModule, settings: Settings, log: str = "api", *uvicorn_args: str
) -> tuple[Process, str]:
    """The API under uvicorn on a free port, once /health answers; returns its base URL."""
    port = free_port()
    args = (*UVICORN_ARGS, *uvicorn_args, "--port", str(port))
    process = await run("uvicorn", settings, *args, log=log)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(int(START_WITHIN_S / 0.05)):
            try:
                if (await client.get("/health")).status_code == 200:
                    return process, base
            except httpx.TransportError:
                pass
            if process.returncode is not None:
                pytest.fail(f"api exited with {process.returncode}")
            await asyncio.sleep(0.05)
    pytest.fail("api did not start")


async def stops_on_sigterm(process: Process, within: float) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), within)
