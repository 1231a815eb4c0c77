"""Run the real entry points (``python -m …``) as subprocesses with a test's settings."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest

from shared.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
START_WITHIN_S = 30  # importing the app takes seconds while other suites load the machine

Process = asyncio.subprocess.Process
RunModule = Callable[..., Awaitable[Process]]


def environment(settings: Settings) -> dict[str, str]:
    """``settings`` as the environment variables ``load_settings`` reads."""
    env = dict(os.environ)
    for name, value in msgspec.structs.asdict(settings).items():
        if value is not None:
            env[name.upper()] = str(value)
    return env


# As the justfile and the image run it: the app, not uvicorn, decides who the client is.
UVICORN_ARGS = ("app:create_app", "--factory", "--no-proxy-headers")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


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
                cwd=PROJECT_ROOT,
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
