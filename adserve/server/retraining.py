"""Scheduled retraining in a process of its own, beside the serving one.

Training reads the event log line by line in Python, then fits. In a thread of the serving
process that reading held the interpreter lock for seconds, and the event loop waited for it at
every socket call: answers stalled for as long as the retrain read. Another process shares no
lock; it runs ``adserve train`` as an operator would, and the model watcher swaps the new file in.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import adserve

log = logging.getLogger("adserve.retrain")


async def train_elsewhere(config_dir: Path, events: Path, model_path: Path) -> bool:
    """Run ``adserve train`` on ``events`` into ``model_path``; whether it wrote a model."""
    code = str(Path(adserve.__file__).resolve().parent.parent)  # this server's own code
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (code, os.environ.get("PYTHONPATH"))))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adserve.cli", "train", "--config", str(config_dir), "--events", str(events),
        "--out", str(model_path), env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await process.communicate()
    except asyncio.CancelledError:  # the server stops: so does its training
        process.kill()
        await process.wait()
        raise
    text = output.decode(errors="replace").strip()
    if process.returncode:
        log.warning("scheduled retrain skipped: %s", text[-2000:])
        return False
    log.info("scheduled retrain: %s", text)
    return True
