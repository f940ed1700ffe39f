"""A training process killed with SIGKILL once it has written a given checkpoint (resume tests)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from models.base.checkpoint import latest_checkpoint, load_checkpoint


def kill_after_checkpoint(config: Path, exp: Path, overrides: list[str], step: int = 2) -> int:
    """Run ``cantor train-stage --config CONFIG --exp_name <exp.name>`` with ``--set`` overrides,
    SIGKILL it once ``exp/checkpoint/step-<step>.pt`` exists (within 300 s), and return the step
    of its newest checkpoint."""
    cmd = [sys.executable, "-m", "cantor.cli", "train-stage", "--config", str(config),
           "--exp_name", exp.name] + [a for s in overrides for a in ("--set", s)]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (exp / "checkpoint" / f"step-{step:08d}.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return load_checkpoint(latest_checkpoint(exp))["step"]
