"""``recflow ui``'s MLflow server: MLflow's own app, with its home page opening experiments in the training view.

MLflow 3's UI chooses an experiment's view from one global switch ("GenAI apps & agents" or
"Machine learning", kept in the browser's ``localStorage`` as ``mlflow.workflowType_v1``), not
from the experiment's ``mlflow.experimentKind`` tag, and the switch starts on GenAI: a user who
opens MLflow's home and clicks a recflow experiment lands in the GenAI overview (traces, token
usage) instead of the runs table. The links recflow prints carry ``?workflowType=machine_learning``;
this app makes the home page agree: its ``index.html`` sets the switch to "Machine learning" when
the browser has never chosen (a user's own choice is kept).

How it is served: ``python -m recflow.runtime.mlflow_ui <mlflow server options>`` is ``mlflow server``
whose server process serves ``recflow.runtime.mlflow_ui:app`` (as ``--app-name`` would, without an
installed entry point): MLflow's FastAPI app around its Flask app, one view replaced. No Prefect import.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP_NAME = "recflow"
WORKFLOW_KEY = "mlflow.workflowType_v1"
#: runs before MLflow's bundle reads the switch
SET_TRAINING = f"localStorage.setItem('{WORKFLOW_KEY}',JSON.stringify('machine_learning'))"
DEFAULT_TO_TRAINING = f"<script>try{{if(!localStorage.getItem('{WORKFLOW_KEY}')){{{SET_TRAINING}}}}}catch(e){{}}</script>"


def training_first(html: str) -> str:
    """MLflow's ``index.html`` with the default-switch script ahead of every other script."""
    head = html.find("<head>")
    at = head + len("<head>") if head >= 0 else 0
    return html[:at] + DEFAULT_TO_TRAINING + html[at:]


def _install() -> None:
    from flask import Response
    from mlflow.server import app as flask_app

    def serve() -> Response:
        return Response(training_first((Path(flask_app.static_folder) / "index.html").read_text()), mimetype="text/html")

    flask_app.view_functions["serve"] = serve


def main(argv: list[str]) -> None:
    import mlflow.server
    from mlflow.cli import cli

    run_server, find = mlflow.server._run_server, mlflow.server._find_app
    mlflow.server._find_app = lambda name: "recflow.runtime.mlflow_ui:app" if name == APP_NAME else find(name)
    mlflow.server._run_server = lambda *args, **kwargs: run_server(*args, **{**kwargs, "app_name": APP_NAME})
    cli.main(["server", *argv], prog_name="mlflow")


if __name__ == "__main__":
    main(sys.argv[1:])
else:
    _install()
    from mlflow.server.fastapi_app import app  # noqa: E402,F401  (what uvicorn serves)
