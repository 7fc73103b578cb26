"""The layers hold: the server process never loads the worker, the trainer or the label audit's cleanlab."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import spam_model

FORBIDDEN_IN_SERVER = ("shoal.worker", "shoal.train", "cleanlab")

SERVER_MODULES = """\
import json, sys
from shoal.serve.app import create_app
from shoal.workspace import Workspace
create_app(Workspace(sys.argv[1]))
print(json.dumps(sorted(sys.modules)))
"""


def test_the_server_imports_no_worker_trainer_or_cleanlab(make_workspace) -> None:
    ws = make_workspace({"spam": spam_model()})
    done = subprocess.run(
        [sys.executable, "-c", SERVER_MODULES, str(ws.root)], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "shoal.serve.app" in loaded and "shoal.registry.prediction_log" in loaded
    leaked = [m for m in loaded if any(m == name or m.startswith(name + ".") for name in FORBIDDEN_IN_SERVER)]
    assert leaked == []
