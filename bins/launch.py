"""``python bins/launch.py [accelerate launch options] SCRIPT [script options]``: ``accelerate launch``
whose exit status is the training script's own (2 for a config, data or checkpoint error, which the
script prints as one line), with no launcher traceback after it.

``accelerate launch`` itself reports a failed script with a ``CalledProcessError`` traceback (one
process) or torch.distributed's ``ChildFailedError`` (several) and exits 1. Here the first failing
process's exit status is returned instead; run.sh stage 2 goes through this.
"""
from __future__ import annotations

import subprocess
import sys


def main(argv: list[str]) -> int:
    """Run ``accelerate launch argv``; returns the script's exit status (0 when it succeeded)."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(argv)
    try:
        launch_command(args)
    except subprocess.CalledProcessError as e:
        return e.returncode if e.returncode > 0 else 1
    except ChildFailedError as e:
        codes = [f.exitcode for _, f in sorted(e.failures.items()) if f.exitcode and f.exitcode > 0]
        return codes[0] if codes else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
