"""Cantor runs offline and reports nothing: importing this module switches off the usage reports
and network look-ups of the packages it uses, before any of them is imported.

``utils/__init__.py`` imports it, so it runs before any project module (every entry point imports
``utils`` before it can reach OpenVINO, Gradio, huggingface_hub or transformers); the console
command and the tests import it first explicitly as well.

- OpenVINO: ``import openvino`` imports ``openvino.tools.ovc``, which sends an "ov import" event to
  Google Analytics from a forked child and writes ``~/intel/openvino_ga_cid`` and ``~/intel/stats``
  (package ``openvino_telemetry``). That package honours no environment variable (only ``CI``,
  which means more to other tools), so it is made unimportable here: OpenVINO then falls back to
  its own no-op stub (``openvino/tools/ovc/telemetry_stub.py``) and writes no file. This holds for
  this process; child processes inherit the environment below and import ``utils`` again.
- Gradio: ``GRADIO_ANALYTICS_ENABLED=False`` (its analytics and version check).
- huggingface_hub and transformers: ``HF_HUB_OFFLINE=1`` (no download, no look-up; weights load
  from ``pretrained/``), ``HF_HUB_DISABLE_TELEMETRY=1``, and the generic ``DO_NOT_TRACK=1``.
"""
from __future__ import annotations

import os
import sys

#: Environment set for this process and every child it starts.
ENVIRONMENT = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
#: Modules that only report usage; None in sys.modules makes ``import`` raise ImportError.
BLOCKED_MODULES = ("openvino_telemetry",)

os.environ.update(ENVIRONMENT)
for _name in BLOCKED_MODULES:
    if _name not in sys.modules:
        sys.modules[_name] = None
