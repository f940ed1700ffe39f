"""``cantor webui [--models ckpts/] [--data data/] [--host 127.0.0.1] [--port 7860]``: the web UI
(Gradio) for converting songs, batch conversion, training and browsing experiments.

It runs offline (no analytics, no share link, nothing fetched from the internet) and binds
127.0.0.1 unless --host says otherwise. Every path it reads or writes must lie inside the --models
and --data folders (symlinks followed); uploads above --max_upload_mb are refused. Exit status: 0
after Ctrl-C, 2 for a missing folder or an unusable port.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="ckpts", metavar="DIR",
                        help="folder of trained experiments (searched 4 levels deep) and of the "
                             "projects the Train tab creates (default: ckpts)")
    parser.add_argument("--data", default="data", metavar="DIR",
                        help="folder of songs and datasets the Batch and Train tabs may read "
                             "(default: data)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 "
                             "exposes the UI to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--max_upload_mb", type=float, default=200.0, metavar="MB",
                        help="largest upload accepted, in megabytes (default: 200)")
    parser.add_argument("--device", default=None,
                        help="torch device for conversions, e.g. cpu or cuda:0 (default: cuda when "
                             "present, else cpu)")


def run(args: argparse.Namespace) -> int:
    for flag in ("models", "data"):
        if not Path(getattr(args, flag)).is_dir():
            print(f"error: --{flag} {getattr(args, flag)}: no such folder", file=sys.stderr)
            return 2
    from cantor.webui.app import launch
    from cantor.webui.handlers import WebUI
    ui = WebUI(args.models, args.data, args.device)
    print(f"Cantor web UI on http://{args.host}:{args.port} (models {ui.sandbox.root('models')}, "
          f"data {ui.sandbox.root('data')}); Ctrl-C stops it")
    try:
        launch(ui, args.host, args.port, args.max_upload_mb)
    except OSError as e:
        print(f"error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    from cantor.cli import run_module
    sys.exit(run_module(sys.modules[__name__]))
