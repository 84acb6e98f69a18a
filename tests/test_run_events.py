"""Reading back the events that triggered a DAG run: one shape for webhook and watcher asset events.

The extras are built by the code that builds them in production (the receiver's ``extra_for_event``
over a parsed delivery, the watcher's ``event_payload`` inside Airflow's trigger wrapper), and the
Airflow side is Airflow's own ``TriggeringAssetEventsAccessor``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset
from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor
from airflow.triggers.base import BaseEventTrigger

from airflow_provider_coverbase.asset_events import CoverbaseRunEvent, run_event_from_extra, run_events
from airflow_provider_coverbase.assets import (
    WATCHER_NAME,
    asset_for_event,
    coverbase_workflow_asset,
    extra_for_event,
    triggering_coverbase_events,
)
from airflow_provider_coverbase.exceptions import CoverbaseConfigError
from airflow_provider_coverbase.models import WorkflowRun
from airflow_provider_coverbase.triggers import events as trigger_events
from airflow_provider_coverbase.waiting.pull_watch import event_payload
from airflow_provider_coverbase.webhooks import parse_event

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
SWEEP = "quarterly-privacy-sweep"


def webhook_extra(run_id: str, event_id: str, at: datetime, **data: Any) -> dict[str, Any]:
    """The receiver's extra for a legacy ``workflow.completed`` delivery."""
    body = {
        "event_id": event_id,
        "event_type": "workflow.completed",
        "occurred_at": int(at.timestamp()),
        "workflow_run_id": run_id,
        "data": {"workflow_run_id": run_id, "workflow_name": SWEEP, "status": "completed", **data},
    }
    return extra_for_event(parse_event(body))


def watcher_extra(run_id: str, at: datetime, status: str = "completed") -> dict[str, Any]:
    """The asset event's extra Airflow writes for one of the watcher's trigger events."""
    run = WorkflowRun.model_validate(
        {
            "workflow_run_id": run_id,
            "workflow_name": SWEEP,
            "status": status,
            "started_at": (at - timedelta(hours=1)).isoformat(),
            "completed_at": at.isoformat(),
        }
    )
    return {"from_trigger": True, "payload": event_payload(run)}


@dataclass
class Recorded:
    """An asset event as the core reads it (Airflow's objects have these two attributes)."""

    extra: dict[str, Any]
    timestamp: datetime


def test_both_shapes_read_as_one_typed_event() -> None:
    hooked = run_event_from_extra(webhook_extra("cbwfr_a", "cbevt_1", T0, output={"vendors": 3}), asset_uri="u")
    polled = run_event_from_extra(watcher_extra("cbwfr_b", T0))
    same: dict[str, Any] = {"workflow_name": SWEEP, "status": "completed", "occurred_at": T0}
    assert hooked == CoverbaseRunEvent(
        **same,
        event_id="cbevt_1",
        event_type="workflow.completed",
        workflow_run_id="cbwfr_a",
        output={"vendors": 3},
        source="webhook",
        asset_uri="u",
    )
    assert polled == CoverbaseRunEvent(
        **same,
        event_id="poll:cbwfr_b:completed",
        event_type="WorkflowRun.Completed",
        workflow_run_id="cbwfr_b",
        source="watcher",
    )


def test_unknown_keys_are_ignored_and_non_coverbase_extras_are_none() -> None:
    extra = {**webhook_extra("cbwfr_a", "cbevt_1", T0), "fields_cut": ["output"]}
    event = run_event_from_extra(extra)
    assert event is not None
    assert event.workflow_run_id == "cbwfr_a"
    assert run_event_from_extra({}) is None  # e.g. "Create asset event" in the UI
    assert run_event_from_extra({"from_rest_api": True, "note": "by hand"}) is None
    assert run_event_from_extra({"from_trigger": True, "payload": {"seq": 4}}) is None  # another trigger's event


def test_a_batch_is_ordered_by_when_it_happened_and_deduplicated_by_event_id() -> None:
    # Recorded by Airflow in another order than they happened (a webhook retried late, a poll that caught up).
    late = Recorded(webhook_extra("cbwfr_3", "cbevt_3", T0 + timedelta(minutes=3)), T0 + timedelta(minutes=4))
    first = Recorded(watcher_extra("cbwfr_1", T0), T0 + timedelta(minutes=5))
    second = Recorded(webhook_extra("cbwfr_2", "cbevt_2", T0 + timedelta(minutes=1)), T0 + timedelta(minutes=1))
    manual = Recorded({"note": "by hand"}, T0)
    events, skipped = run_events(
        [("a", late), ("a", first), ("a", second), ("a", manual), ("b", first)]  # one watcher, two assets
    )
    assert [e.workflow_run_id for e in events] == ["cbwfr_1", "cbwfr_2", "cbwfr_3"]
    assert [e.source for e in events] == ["watcher", "webhook", "webhook"]
    assert skipped == 1


def test_airflow_timestamp_orders_events_without_occurred_at_and_breaks_ties() -> None:
    no_time = webhook_extra("cbwfr_x", "cbevt_x", T0)
    no_time["occurred_at"] = None
    tie_a = Recorded(watcher_extra("cbwfr_a", T0), T0 + timedelta(seconds=2))
    tie_b = Recorded(watcher_extra("cbwfr_b", T0), T0 + timedelta(seconds=1))
    naive = webhook_extra("cbwfr_n", "cbevt_n", T0)
    naive["occurred_at"] = "2026-10-01T11:00:00"  # no offset: read as UTC
    events, _ = run_events(
        [(None, tie_a), (None, Recorded(no_time, T0 - timedelta(days=1))), (None, tie_b), (None, Recorded(naive, T0))]
    )
    assert [e.workflow_run_id for e in events] == ["cbwfr_x", "cbwfr_n", "cbwfr_b", "cbwfr_a"]


def airflow_event(asset: Asset, extra: dict[str, Any], at: datetime) -> AssetEventDagRunReferenceResult:
    return AssetEventDagRunReferenceResult(
        asset={"name": asset.name, "uri": asset.uri, "extra": {}},
        extra=extra,
        source_task_id=None,
        source_dag_id=None,
        source_run_id=None,
        source_map_index=None,
        source_aliases=[],
        timestamp=at,
    )


def test_the_airflow_wrapper_reads_a_dag_runs_triggering_events() -> None:
    done = coverbase_workflow_asset(SWEEP)
    failed = coverbase_workflow_asset(SWEEP, failed=True)
    other = Asset("s3://bucket/report.csv")
    accessor = TriggeringAssetEventsAccessor.build(
        [
            airflow_event(done, watcher_extra("cbwfr_2", T0 + timedelta(seconds=30)), T0 + timedelta(seconds=31)),
            airflow_event(done, webhook_extra("cbwfr_1", "cbevt_1", T0), T0 + timedelta(seconds=1)),
            airflow_event(done, webhook_extra("cbwfr_1", "cbevt_1", T0), T0 + timedelta(seconds=2)),
            airflow_event(failed, watcher_extra("cbwfr_9", T0 + timedelta(seconds=10), "failed"), T0),
            airflow_event(other, {"rows": 10}, T0),
        ]
    )
    context = {"triggering_asset_events": accessor}
    batch = triggering_coverbase_events(done, context=context)
    assert [(e.workflow_run_id, e.source, e.asset_uri) for e in batch] == [
        ("cbwfr_1", "webhook", done.uri),
        ("cbwfr_2", "watcher", done.uri),
    ]
    every = triggering_coverbase_events(context=context)  # all coverbase:// assets; the S3 asset is not one
    assert [(e.workflow_run_id, e.status) for e in every] == [
        ("cbwfr_1", "completed"),
        ("cbwfr_9", "failed"),
        ("cbwfr_2", "completed"),
    ]
    assert triggering_coverbase_events(coverbase_workflow_asset("other"), context=context) == []
    assert triggering_coverbase_events(context={}) == []  # a manual run has no triggering events


# ---- one declaration of a watched asset --------------------------------------------------------


def trigger_of(asset: Asset) -> BaseEventTrigger:
    (watcher,) = asset.watchers
    assert watcher.name == WATCHER_NAME
    return watcher.trigger


def test_the_pull_path_is_chosen_by_configuration_and_declared_the_same_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert coverbase_workflow_asset(SWEEP).watchers == []  # webhooks: no watcher
    monkeypatch.setenv("AIRFLOW__COVERBASE__PULL_CONNECTIONS", " coverbase_default , org_b")
    monkeypatch.setenv("AIRFLOW__COVERBASE__PULL_POLL_INTERVAL", "15")
    one, two = coverbase_workflow_asset(SWEEP), coverbase_workflow_asset(SWEEP)  # as two DAG files would
    classpath, kwargs = trigger_of(one).serialize()
    assert classpath == "airflow_provider_coverbase.triggers.events.CoverbaseWorkflowRunEventTrigger"
    assert kwargs["statuses"] == ["completed"]
    assert (kwargs["workflow_name"], kwargs["coverbase_conn_id"], kwargs["poll_interval"]) == (
        SWEEP,
        "coverbase_default",
        15.0,
    )
    assert BaseEventTrigger.hash(*trigger_of(one).serialize()) == BaseEventTrigger.hash(*trigger_of(two).serialize())
    assert trigger_of(coverbase_workflow_asset(SWEEP, failed=True, conn_id="org_b")).serialize()[1]["statuses"] == [
        "failed"
    ]
    assert coverbase_workflow_asset(SWEEP, conn_id="org_c").watchers == []  # not listed: webhooks


def test_the_webhook_receiver_builds_the_asset_without_the_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__COVERBASE__PULL_CONNECTIONS", "coverbase_default")
    body = {"event_id": "e", "event_type": "WorkflowRun.Completed", "data": {"workflow_run_id": "cbwfr_a"}}
    asset = asset_for_event(parse_event(body), "coverbase_default", SWEEP)
    assert asset is not None
    assert asset.watchers == []  # it only needs the identity: no trigger is built in the API server
    assert (asset.name, asset.uri, asset.group) == (
        coverbase_workflow_asset(SWEEP).uri,
        coverbase_workflow_asset(SWEEP).uri,
        "coverbase",
    )


def test_checkpoint_assets_get_no_watcher_and_say_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__COVERBASE__PULL_CONNECTIONS", "coverbase_default")
    with caplog.at_level(logging.WARNING):
        asset = coverbase_workflow_asset(SWEEP, checkpoint="responses_aggregated")
    assert asset.watchers == []
    assert "a poll sees no checkpoints" in caplog.text


def test_watchers_are_refused_with_the_setting_to_use_instead() -> None:
    with pytest.raises(CoverbaseConfigError, match=r"\[coverbase\] pull_connections"):
        coverbase_workflow_asset(SWEEP, watchers=[])


def test_a_watch_restarted_again_and_again_in_one_triggerer_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.flapping")
    key = "coverbase-watch:coverbase_default:flapping:completed"
    with caplog.at_level(logging.WARNING, logger="test.flapping"):
        trigger_events._note_start(key, "flapping", logger)  # started
        trigger_events._note_start(key, "flapping", logger)  # once restarted (e.g. the DAG was unpaused)
        assert caplog.text == ""
        trigger_events._note_start(key, "flapping", logger)
    assert "The watch of 'flapping' was started 3 times" in caplog.text
    assert "[coverbase] pull_connections" in caplog.text
    trigger_events._watch_starts.pop(key)


def test_the_docs_event_driven_example_is_taken_from_the_tested_example_dag() -> None:
    """Each part of the webhooks page's excerpt (between ``...`` lines) is in the example DAG file, in order."""
    page = (REPO / "docs" / "webhooks.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- example-dag: (?P<path>\S+) -->\n```python\n(?P<code>.*?)\n```", page, re.DOTALL)
    assert match is not None, "docs/webhooks.md has no <!-- example-dag: PATH --> block"
    assert match["path"] == "example_dags/coverbase_quarterly_report.py"
    source = (REPO / match["path"]).read_text(encoding="utf-8")
    parts = re.split(r"^\s*\.\.\.\n", match["code"] + "\n", flags=re.MULTILINE)
    position = 0
    for part in filter(None, parts):
        found = source.find(part, position)
        assert found >= 0, f"not in {match['path']} (after the previous part):\n{part}"
        position = found + len(part)
    assert len(parts) >= 4
