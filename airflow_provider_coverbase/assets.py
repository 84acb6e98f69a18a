"""Airflow Assets for Coverbase workflow runs, and what an asset event says about the run.

One helper builds every asset, so nobody hand-writes URIs::

    from airflow_provider_coverbase.assets import coverbase_workflow_asset

    sweep_done = coverbase_workflow_asset("quarterly-privacy-sweep")
    responses_in = coverbase_workflow_asset("quarterly-privacy-sweep", checkpoint="responses_aggregated")
    sweep_failed = coverbase_workflow_asset("quarterly-privacy-sweep", failed=True)

URI layout (the name of the asset is the same string)::

    coverbase://<conn id>/workflows/<workflow name>/completed
    coverbase://<conn id>/workflows/<workflow name>/failed
    coverbase://<conn id>/workflows/<workflow name>/checkpoints/<checkpoint name>

The connection id is the URI's host, so two Coverbase orgs (two connections) with a workflow of the
same name are two different assets. Each part is percent-encoded (``vendor sweep/eu`` becomes
``vendor%20sweep%2Feu``). The provider registers the ``coverbase`` scheme with Airflow
(``asset-uris`` in the provider info), so Airflow rejects a malformed ``coverbase://`` URI when the
DAG is parsed.

The webhook receiver (``plugins/webhooks.py``) and the pull-path event trigger both emit events on
these assets, with the extra built by :func:`asset_event_extra`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import SplitResult, quote

from airflow.sdk import Asset

from airflow_provider_coverbase.exceptions import CoverbaseConfigError
from airflow_provider_coverbase.webhooks import (
    EXTRA_KEYS,
    MAX_OUTPUT_BYTES,
    CoverbaseWebhookEvent,
    asset_event_extra,
)

__all__ = [
    "ASSET_GROUP",
    "EXTRA_KEYS",
    "MAX_OUTPUT_BYTES",
    "SCHEME",
    "asset_event_extra",
    "asset_for_event",
    "coverbase_workflow_asset",
    "extra_for_event",
    "sanitize_uri",
    "workflow_asset_uri",
]

SCHEME = "coverbase"
ASSET_GROUP = "coverbase"

_PATH = re.compile(r"^/workflows/([^/]+)/(completed|failed|checkpoints/([^/]+))$")


def workflow_asset_uri(
    workflow_name: str, *, checkpoint: str | None = None, failed: bool = False, conn_id: str = "coverbase_default"
) -> str:
    """The ``coverbase://`` URI of a workflow's completion, failure or checkpoint asset."""
    for label, value in (("workflow_name", workflow_name), ("conn_id", conn_id)):
        if not isinstance(value, str) or not value.strip():
            raise CoverbaseConfigError(f"{label} must be a non-empty string, got {value!r}")
    if checkpoint is not None and (not isinstance(checkpoint, str) or not checkpoint.strip()):
        raise CoverbaseConfigError(f"checkpoint must be a non-empty string or None, got {checkpoint!r}")
    if checkpoint is not None and failed:
        raise CoverbaseConfigError("a checkpoint asset cannot also be the failure asset: pass one of them")
    if checkpoint is not None:
        tail = f"checkpoints/{quote(checkpoint, safe='')}"
    else:
        tail = "failed" if failed else "completed"
    return f"{SCHEME}://{quote(conn_id, safe='')}/workflows/{quote(workflow_name, safe='')}/{tail}"


def coverbase_workflow_asset(
    workflow_name: str,
    *,
    checkpoint: str | None = None,
    failed: bool = False,
    conn_id: str = "coverbase_default",
    **asset_kwargs: Any,
) -> Asset:
    """The Airflow Asset that gets an event when a run of ``workflow_name`` completes.

    With ``checkpoint=...`` it is the asset of that checkpoint being reached; with ``failed=True`` the
    asset of a run failing. ``conn_id`` is the Coverbase connection whose webhook (or watcher)
    reports the runs. Other keyword arguments go to ``Asset`` (``watchers=``, ``extra=``, ``name=``,
    ``group=``); the name defaults to the URI and the group to ``coverbase``.
    """
    uri = workflow_asset_uri(workflow_name, checkpoint=checkpoint, failed=failed, conn_id=conn_id)
    asset_kwargs.setdefault("name", uri)
    asset_kwargs.setdefault("group", ASSET_GROUP)
    return Asset(uri=uri, **asset_kwargs)


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's URI check for the ``coverbase`` scheme (registered in the provider info)."""
    if not uri.netloc:
        raise ValueError(
            f"a coverbase:// asset URI needs the connection id as its host, got {uri.geturl()!r}; "
            "build it with coverbase_workflow_asset()"
        )
    if not _PATH.match(uri.path):
        raise ValueError(
            f"not a Coverbase workflow asset URI: {uri.geturl()!r}; expected "
            "coverbase://<conn id>/workflows/<name>/(completed|failed|checkpoints/<checkpoint>), "
            "as coverbase_workflow_asset() builds it"
        )
    return uri


def asset_for_event(event: CoverbaseWebhookEvent, conn_id: str, workflow_name: str | None = None) -> Asset | None:
    """The asset a workflow event lands on, or ``None`` when it concerns no asset.

    ``completed`` goes to the workflow's asset, ``failed`` to its failure asset, ``checkpoint`` to
    that checkpoint's asset. ``workflow_name`` overrides the event's (a V1+ delivery has none; the
    receiver reads it from the API). Other kinds, and events without a workflow name, give ``None``.
    """
    name = workflow_name or event.workflow_name
    if event.kind == "other" or not name:
        return None
    if event.kind == "checkpoint":
        return coverbase_workflow_asset(name, checkpoint=event.checkpoint, conn_id=conn_id)
    return coverbase_workflow_asset(name, failed=event.kind == "failed", conn_id=conn_id)


def extra_for_event(
    event: CoverbaseWebhookEvent, *, workflow_name: str | None = None, status: str | None = None
) -> dict[str, Any]:
    """:func:`asset_event_extra` of a webhook event; ``workflow_name``/``status`` override the event's."""
    return asset_event_extra(
        event_id=event.event_id,
        event_type=event.event_type,
        workflow_run_id=event.workflow_run_id,
        workflow_name=workflow_name or event.workflow_name,
        status=status or event.status,
        checkpoint=event.checkpoint,
        occurred_at=event.occurred_at,
        output=event.output,
    )
