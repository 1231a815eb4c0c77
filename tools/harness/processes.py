"""The project's entry points as processes: free ports, process groups, readiness, stopping."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tools.harness.names import ROOT

# As the justfile and the image run it: the app, not uvicorn, decides who the client is.
UVICORN_ARGS = ("app:create_app", "--factory", "--no-proxy-headers")


def free_port() -> int:
    """A port free on loopback now (the process that binds it next is started right after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def uvicorn_argv(target: str, port: int, workers: int = 1) -> list[str]:
    """``target`` (``module:factory``) served as the API is; the same for the bench's yardsticks."""
    argv = [sys.executable, "-m", "uvicorn", target, "--factory", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", str(workers)]
    return [*argv, "--no-access-log", "--no-proxy-headers"]


def module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@dataclass
class Proc:
    """A started process, leading its own process group (so a stop reaches its workers too)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL, no goodbye: what an OOM kill or a power cut does."""
        if self.alive():
            self.signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL what is left after ``grace``."""
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(5)


def start(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Proc:
    """Start ``argv`` in the project's root, in a group of its own, logging to ``logs/name.log``."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(  # noqa: S603 - our interpreter running our modules
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Proc(name, popen, log)


async def answers(url: str, proc: Proc, *, within: float, expect: int = 200) -> bool:
    """Poll ``url`` until it answers ``expect``; False once ``proc`` died or time ran out."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline and proc.alive():
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == expect:
                    return True
            await asyncio.sleep(0.2)
    return False
