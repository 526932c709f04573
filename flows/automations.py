"""``python -m flows.automations``: create automations.yaml's alerts on the server at ``$PREFECT_API_URL``.

``make deploy`` runs it after ``prefect deploy --all``. The webhook is a Prefect ``Webhook`` block
(``recflow-alerts``) saved with the URL in ``$RECFLOW_ALERT_WEBHOOK_URL``, so the URL lives in the
operator's environment and Prefect's block store, never in the repository. Rerunning replaces the
block and every automation of the same name: the file is the single source, as prefect.yaml is for
the deployments. Without a URL nothing is created (an alert with nowhere to go is noise in the UI).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
AUTOMATIONS_YAML = REPO / "automations.yaml"
URL_VARIABLE = "RECFLOW_ALERT_WEBHOOK_URL"
WEBHOOK_BLOCK = "recflow-alerts"


def automation_specs(path: Path = AUTOMATIONS_YAML) -> list[dict[str, Any]]:
    return (yaml.safe_load(Path(path).read_text()) or {}).get("automations") or []


def apply(url: str, path: Path = AUTOMATIONS_YAML) -> list[str]:
    """Save the webhook block, then replace each automation of the file; returns their names."""
    from prefect.automations import Automation
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client

    block_id = Webhook(method="POST", url=url, allow_private_urls=True).save(WEBHOOK_BLOCK, overwrite=True)
    names = []
    with get_client(sync_client=True) as client:
        for spec in automation_specs(path):
            for existing in client.read_automations_by_name(spec["name"]):
                client.delete_automation(existing.id)
            actions = [
                {**action, "block_document_id": str(block_id)} if action.get("type") == "call-webhook" else action for action in spec.get("actions") or []
            ]
            Automation.model_validate({**spec, "actions": actions}).create()
            names.append(spec["name"])
    return names


def main() -> int:
    url = os.environ.get(URL_VARIABLE)
    if not url:
        print(f"alerts: {URL_VARIABLE} is not set, no automations created (set it to a webhook URL and rerun make deploy)")
        return 0
    names = apply(url)
    print(f"alerts: {', '.join(names)} -> webhook block {WEBHOOK_BLOCK!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
