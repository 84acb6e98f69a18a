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

The webhook receiver (``plugins/webhook_receiver.py``) and the pull-path event trigger both emit events on
these assets, with the extra built by :func:`asset_event_extra`; a consumer task reads them back
with :func:`triggering_coverbase_events`, in one shape whichever path produced them.

**Webhooks or pull is a deployment setting, not a DAG argument.** Airflow keeps one set of watchers
per asset and rewrites it from every DAG file that declares the asset: when one file declares it with
a watcher and another without (or with other trigger settings), each parse of either file stops the
watch or starts it again, and events are lost. So :func:`coverbase_workflow_asset` attaches the pull
watcher itself, from Airflow's configuration, and refuses ``watchers=``; every DAG file that calls it
declares the same asset::

    [coverbase]
    # Connections whose completion and failure assets are watched by polling (comma-separated).
    pull_connections = coverbase_default
    # Seconds between polls (one shared poll per connection on Airflow >= 3.3), and how far back
    # in run creation each poll looks (seconds).
    pull_poll_interval = 60
    pull_lookback = 2592000

(or ``AIRFLOW__COVERBASE__PULL_CONNECTIONS=...`` in the environment of the DAG processor). Checkpoint
assets get no watcher: a poll sees no checkpoints.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit

from airflow.sdk import Asset, AssetWatcher

try:
    from airflow.sdk import conf
except ImportError:  # a task SDK without airflow.sdk.conf: Airflow's own configuration
    from airflow.configuration import conf  # type: ignore[assignment]

from airflow_provider_coverbase.asset_events import (
    EXTRA_KEYS,
    MAX_OUTPUT_BYTES,
    AssetEventLike,
    CoverbaseRunEvent,
    asset_event_extra,
    run_events,
)
from airflow_provider_coverbase.defaults import DEFAULT_PULL_LOOKBACK, DEFAULT_PULL_POLL_INTERVAL
from airflow_provider_coverbase.exceptions import CoverbaseConfigError
from airflow_provider_coverbase.webhooks import CoverbaseWebhookEvent

__all__ = [
    "ASSET_GROUP",
    "CONFIG_SECTION",
    "EXTRA_KEYS",
    "MAX_OUTPUT_BYTES",
    "SCHEME",
    "WATCHER_NAME",
    "CoverbaseRunEvent",
    "asset_event_extra",
    "asset_for_event",
    "coverbase_workflow_asset",
    "extra_for_event",
    "pull_connections",
    "sanitize_uri",
    "triggering_coverbase_events",
    "workflow_asset_uri",
    "workflow_of_asset_uri",
]

log = logging.getLogger(__name__)

SCHEME = "coverbase"
ASSET_GROUP = "coverbase"
#: The Airflow configuration section of the pull path's settings.
CONFIG_SECTION = "coverbase"
#: The name of the watcher :func:`coverbase_workflow_asset` attaches on the pull path.
WATCHER_NAME = "coverbase_pull"

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


def pull_connections() -> frozenset[str]:
    """The connections whose runs are watched by polling: ``[coverbase] pull_connections``, comma-separated."""
    value = conf.get(CONFIG_SECTION, "pull_connections", fallback="") or ""
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def _pull_watchers(workflow_name: str, conn_id: str, *, failed: bool) -> list[AssetWatcher]:
    """The watcher of a completion or failure asset on the pull path, built from the configuration only."""
    from airflow_provider_coverbase.triggers.events import CoverbaseWorkflowRunEventTrigger

    trigger = CoverbaseWorkflowRunEventTrigger(
        workflow_name,
        coverbase_conn_id=conn_id,
        statuses=["failed" if failed else "completed"],
        poll_interval=conf.getfloat(CONFIG_SECTION, "pull_poll_interval", fallback=DEFAULT_PULL_POLL_INTERVAL),
        lookback=conf.getfloat(CONFIG_SECTION, "pull_lookback", fallback=DEFAULT_PULL_LOOKBACK),
    )
    return [AssetWatcher(name=WATCHER_NAME, trigger=trigger)]


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
    reports the runs. When ``conn_id`` is one of ``[coverbase] pull_connections``, a completion or
    failure asset comes with its pull watcher (``CoverbaseWorkflowRunEventTrigger`` with the
    configured poll settings), the same in every DAG file; ``watchers=`` is refused for that reason
    (see the module docstring). Other keyword arguments go to ``Asset`` (``extra=``, ``name=``,
    ``group=``); the name defaults to the URI and the group to ``coverbase``.
    """
    if "watchers" in asset_kwargs:
        raise CoverbaseConfigError(
            "coverbase_workflow_asset() does not take watchers=: a Coverbase asset declared with a watcher in one "
            "DAG file and without it (or with other settings) in another makes Airflow stop and restart the watch "
            "on every parse. List the connection in the [coverbase] pull_connections setting instead "
            "(AIRFLOW__COVERBASE__PULL_CONNECTIONS), and every DAG file gets the same watcher."
        )
    uri = workflow_asset_uri(workflow_name, checkpoint=checkpoint, failed=failed, conn_id=conn_id)
    asset_kwargs.setdefault("name", uri)
    asset_kwargs.setdefault("group", ASSET_GROUP)
    if conn_id in pull_connections():
        if checkpoint is None:
            asset_kwargs["watchers"] = _pull_watchers(workflow_name, conn_id, failed=failed)
        else:
            log.warning(
                "%s gets no events on the pull path (a poll sees no checkpoints); only webhooks report checkpoints",
                uri,
            )
    return Asset(uri=uri, **asset_kwargs)


def workflow_of_asset_uri(uri: str) -> str | None:
    """The workflow name in a ``coverbase://`` asset URI (the inverse of :func:`workflow_asset_uri`), else ``None``."""
    parts = urlsplit(uri)
    match = _PATH.match(parts.path) if parts.scheme == SCHEME else None
    return unquote(match.group(1)) if match else None


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
    checkpoint = event.checkpoint if event.kind == "checkpoint" else None
    uri = workflow_asset_uri(name, checkpoint=checkpoint, failed=event.kind == "failed", conn_id=conn_id)
    return Asset(uri=uri, name=uri, group=ASSET_GROUP)  # the receiver needs its identity, not its watchers


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


def triggering_coverbase_events(
    asset: Asset | None = None, *, context: Mapping[str, Any] | None = None
) -> list[CoverbaseRunEvent]:
    """Every Coverbase event that triggered this DAG run, oldest first, once each, in one shape.

    Call it in a task of a DAG scheduled on Coverbase assets. Airflow starts **one DAG run per batch
    of events**: every event that arrived since the previous run (several finished runs of a
    workflow, a webhook burst, the catch-up of a restarted triggerer) triggers one run, so handle
    them all, not only the newest. ``asset`` limits the events to one asset; without it, the events
    of every ``coverbase://`` asset of the run are merged. Webhook events and pull-watcher events
    read the same (:class:`CoverbaseRunEvent`); see
    :func:`airflow_provider_coverbase.asset_events.run_events` for the order and the de-duplication.
    Asset events that are not Coverbase events (created by hand, for instance) are left out, with a
    warning in the task log. ``context`` defaults to the running task's context.
    """
    if context is None:
        from airflow.sdk import get_current_context

        context = get_current_context()
    triggering: Mapping[Any, Iterable[AssetEventLike]] = context.get("triggering_asset_events") or {}
    pairs: list[tuple[str | None, AssetEventLike]] = []
    if asset is not None:
        pairs = [(asset.uri, event) for event in triggering.get(asset, [])]
    else:
        for key in triggering:
            if isinstance(key, Asset) and key.uri.startswith(f"{SCHEME}://"):
                pairs.extend((key.uri, event) for event in triggering[key])
    events, skipped = run_events(pairs)
    if skipped:
        log.warning("%d triggering asset event(s) are not Coverbase events and were left out", skipped)
    return events
