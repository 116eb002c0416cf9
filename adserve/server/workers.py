"""Several worker processes on one port: the parent that starts, signals and restarts them.

One Python process answers pages on one core; ``adserve serve --workers N`` runs N of them. Each
worker is an ordinary ``adserve serve`` process (the app inside is unchanged) started afresh, not
forked: a fork would copy the parent's BLAS threads and locks, and a restarted worker then runs
exactly the code path of a first start. Every worker binds its own socket on the port with
``SO_REUSEPORT``, so the kernel spreads new connections evenly over them; one shared socket let
whichever worker woke first accept a whole burst of connections, and keep-alive clients then stayed
on it. The parent keeps the port bound without listening (it receives no connection), so another
program cannot take it while a worker restarts.

Signals: SIGTERM or SIGINT to the parent stops every worker gracefully (each stops accepting,
answers what is in flight, flushes its event log); SIGHUP reloads config and model in every worker.
A worker that dies for any other reason is started again in its slot (same writer name), and the
parent logs how it ended; one that dies right after starting is restarted with a growing pause.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Callable

log = logging.getLogger("adserve.workers")
STARTED_OK_SECONDS = 10.0  # a worker that lived this long is not crash-looping: no pause before it restarts
MAX_PAUSE_SECONDS = 30.0
PR_SET_PDEATHSIG = 1


def writer_name(base: str | None, slot: int) -> str:
    """The event writer of worker ``slot``: unique per worker and host, the same after a restart.

    ``base`` is the operator's ``--writer`` (one per replica) or, by default, this host's name.
    """
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0]) or "host"
    return f"{base or host}-w{slot}"


def tag_logs(writer: str) -> None:
    """Prefix this worker's log lines with its writer name: the workers share one stderr."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s [{writer}]: %(message)s"))


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies, so a killed parent leaves no workers."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the workers outlive a SIGKILLed parent
        pass


def describe(status: int) -> str:
    """How a child ended, from ``os.waitpid``'s status."""
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


class Supervisor:
    """Starts ``count`` workers, passes signals on, restarts the ones that die, until told to stop.

    ``command(slot)`` is the argument list that runs worker ``slot`` (1-based).
    """

    def __init__(self, count: int, command: Callable[[int], list[str]], port_holder: socket.socket) -> None:
        self.count = count
        self.command = command
        self.port_holder = port_holder
        self.children: dict[int, tuple[int, float, subprocess.Popen]] = {}  # pid -> (slot, started at, process)
        self.failures = dict.fromkeys(range(1, count + 1), 0)  # quick deaths in a row, per slot
        self.stopping = False

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        signal.signal(signal.SIGHUP, self._forward)
        for slot in range(1, self.count + 1):
            self._start(slot)
        while self.children:
            pid, status = os.wait()  # retried after a signal handler has run (PEP 475)
            if pid not in self.children:
                continue
            slot, started, process = self.children.pop(pid)
            process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            if self.stopping:
                continue
            lived = time.monotonic() - started
            self.failures[slot] = 0 if lived >= STARTED_OK_SECONDS else self.failures[slot] + 1
            pause = min(MAX_PAUSE_SECONDS, 0.5 * 2 ** self.failures[slot]) if self.failures[slot] else 0.0
            log.error("worker %d (pid %d) %s after %.0f s; restarting it%s", slot, pid, describe(status),
                      lived, f" in {pause:.1f} s" if pause else "")
            time.sleep(pause)
            if not self.stopping:
                self._start(slot)
        self.port_holder.close()
        log.info("all workers stopped")
        return 0

    def _start(self, slot: int) -> None:
        process = subprocess.Popen(self.command(slot), preexec_fn=_die_with_parent)
        self.children[process.pid] = (slot, time.monotonic(), process)
        if self.stopping:  # the stop signal came while it was starting
            os.kill(process.pid, signal.SIGTERM)

    def _stop(self, signum: int, frame) -> None:
        if not self.stopping:
            log.info("%s: stopping %d workers after their in-flight requests", signal.Signals(signum).name,
                     len(self.children))
        self.stopping = True
        self._send(signal.SIGTERM)

    def _forward(self, signum: int, frame) -> None:
        log.info("%s: reloading config and model in every worker", signal.Signals(signum).name)
        self._send(signum)

    def _send(self, signum: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:  # exited, not reaped yet
                pass


def worker_command(slot: int, config_dir: str, host: str, port: int, writer: str, demo: bool) -> list[str]:
    """``adserve serve`` for one worker: the parent's settings, its own writer, on the shared port."""
    return [sys.executable, "-m", "adserve.cli", "serve", "--config", config_dir, "--host", host,
            "--port", str(port), "--writer", writer, "--worker", str(slot), *(["--demo"] if demo else [])]
