"""The layers hold: the server process never loads the worker, the trainer, the label audit's cleanlab or Ray."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import spam_model

FORBIDDEN_IN_SERVER = ("shoal.worker", "shoal.train", "cleanlab", "ray")

SERVER_MODULES = """\
import json, sys
from shoal.serve.app import create_app
from shoal.workspace import Workspace
create_app(Workspace(sys.argv[1]))
print(json.dumps(sorted(sys.modules)))
"""


def test_the_server_imports_no_worker_trainer_cleanlab_or_ray(make_workspace) -> None:
    ws = make_workspace({"spam": spam_model()})
    done = subprocess.run(
        [sys.executable, "-c", SERVER_MODULES, str(ws.root)], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "shoal.serve.app" in loaded and "shoal.registry.prediction_log" in loaded
    leaked = [m for m in loaded if any(m == name or m.startswith(name + ".") for name in FORBIDDEN_IN_SERVER)]
    assert leaked == []


DASHBOARD_MODULES = """\
import json, sys
from fastapi.testclient import TestClient
from shoal.serve.app import create_app
from shoal.workspace import Workspace
app = create_app(Workspace(sys.argv[1]))
before = sorted(sys.modules)
with TestClient(app) as client:
    assert client.get("/ui/events").status_code == 200
print(json.dumps([before, sorted(sys.modules)]))
"""


def test_the_dashboard_loads_the_report_and_pandas_with_its_first_page_only(make_workspace) -> None:
    ws = make_workspace({"spam": spam_model()})
    done = subprocess.run(
        [sys.executable, "-c", DASHBOARD_MODULES, str(ws.root)], capture_output=True, text=True, check=True, timeout=120
    )
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert "shoal.serve.ui" in before
    assert not [m for m in before if m.split(".")[0] == "pandas" or m.startswith("shoal.report")]
    assert "shoal.serve.ui.pages" in after and "shoal.report.html" in after
