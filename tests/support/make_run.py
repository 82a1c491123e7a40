"""Running `make run` as a new user does: started in its own process group, stopped with Ctrl-C."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stopped:
    """What `make run` printed and how it ended, known once it has stopped."""

    output: str = ""
    returncode: int | None = None


@contextlib.contextmanager
def running_make_run(env: dict[str, str], url: str) -> Iterator[Stopped]:
    """Start `make run`, wait until `url` answers, then stop it with Ctrl-C.

    What it yields is filled in once `make run` has stopped: read it after the `with` block.
    """
    process = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    stopped = Stopped()
    try:
        if not served(process, url):
            raise AssertionError(f"make run never answered at {url}")
        yield stopped
    except AssertionError as never_served:
        stop(process, stopped)
        never_served.add_note(
            f"make run ended with {stopped.returncode}, printing:\n{stopped.output}"
        )
        raise
    finally:
        stop(process, stopped)


def stop(process: subprocess.Popen, stopped: Stopped) -> None:
    if stopped.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):  # all of it gone already
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    stopped.output = process.communicate(timeout=60)[0]
    stopped.returncode = process.returncode


def served(process: subprocess.Popen, url: str) -> bool:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            requests.get(url, timeout=5)
            return True
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or a busy machine
            time.sleep(0.3)
    return False
