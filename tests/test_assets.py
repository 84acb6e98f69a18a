"""``assets.py``: the asset helper, Airflow's check of ``coverbase://`` URIs, event -> asset and extra."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.sdk import Asset

from airflow_provider_coverbase.assets import (
    EXTRA_KEYS,
    MAX_OUTPUT_BYTES,
    asset_event_extra,
    asset_for_event,
    coverbase_workflow_asset,
    extra_for_event,
    workflow_asset_uri,
    workflow_of_asset_uri,
)
from airflow_provider_coverbase.exceptions import CoverbaseConfigError
from airflow_provider_coverbase.webhooks import parse_event


def test_uri_layout() -> None:
    assert coverbase_workflow_asset("quarterly-privacy-sweep").uri == (
        "coverbase://coverbase_default/workflows/quarterly-privacy-sweep/completed"
    )
    assert coverbase_workflow_asset("quarterly-privacy-sweep", failed=True, conn_id="org_b").uri == (
        "coverbase://org_b/workflows/quarterly-privacy-sweep/failed"
    )
    asset = coverbase_workflow_asset("quarterly-privacy-sweep", checkpoint="responses_aggregated")
    assert (
        asset.uri == "coverbase://coverbase_default/workflows/quarterly-privacy-sweep/checkpoints/responses_aggregated"
    )
    assert asset.name == asset.uri
    assert asset.group == "coverbase"


def test_names_are_percent_encoded_and_orgs_do_not_collide() -> None:
    asset = coverbase_workflow_asset("vendor sweep/eu", checkpoint="a/b?c#d", conn_id="org.1")
    assert asset.uri == "coverbase://org.1/workflows/vendor%20sweep%2Feu/checkpoints/a%2Fb%3Fc%23d"
    assert coverbase_workflow_asset("w", conn_id="a").uri != coverbase_workflow_asset("w", conn_id="b").uri


def test_asset_kwargs_pass_through() -> None:
    asset = coverbase_workflow_asset("w", name="sweep done", group="reports", extra={"team": "grc"})
    assert (asset.name, asset.group, asset.extra) == ("sweep done", "reports", {"team": "grc"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workflow_name": ""}, "workflow_name must be a non-empty string"),
        ({"workflow_name": "w", "conn_id": " "}, "conn_id must be a non-empty string"),
        ({"workflow_name": "w", "checkpoint": ""}, "checkpoint must be a non-empty string"),
        ({"workflow_name": "w", "checkpoint": "c", "failed": True}, "cannot also be the failure asset"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CoverbaseConfigError, match=message):
        workflow_asset_uri(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "uri",
    [
        "coverbase:///workflows/w/completed",
        "coverbase://c/w/completed",
        "coverbase://c/workflows/w/done",
        "coverbase://c/workflows/w/checkpoints",
        "coverbase://c/workflows/a/b/completed",
    ],
)
def test_airflow_rejects_malformed_coverbase_uris(uri: str) -> None:
    # The provider registers the scheme (asset-uris), so Airflow's own Asset() runs our check.
    with pytest.raises(ValueError, match="coverbase"):
        Asset(uri=uri)


def test_airflow_accepts_what_the_helper_builds() -> None:
    uri = coverbase_workflow_asset("vendor sweep/eu", checkpoint="x").uri
    assert Asset(uri=uri).uri == uri


def test_event_to_asset() -> None:
    completed = parse_event(
        {"event_id": "e1", "event_type": "workflow.completed", "workflow_run_id": "r", "data": {"workflow_name": "w"}}
    )
    failed = parse_event({"event_id": "e2", "event_type": "WorkflowRun.Failed", "data": {"workflow_run_id": "r"}})
    checkpoint = parse_event(
        {
            "event_id": "e3",
            "event_type": "workflow.checkpoint",
            "workflow_run_id": "r",
            "data": {"workflow_name": "w", "checkpoint": "cp"},
        }
    )
    other = parse_event({"event_id": "e4", "event_type": "Vendor.Created"})
    assert asset_for_event(completed, "c") == coverbase_workflow_asset("w", conn_id="c")
    assert asset_for_event(failed, "c") is None  # no workflow name: the receiver reads it from the API
    assert asset_for_event(failed, "c", "w") == coverbase_workflow_asset("w", failed=True, conn_id="c")
    assert asset_for_event(checkpoint, "c") == coverbase_workflow_asset("w", checkpoint="cp", conn_id="c")
    assert asset_for_event(other, "c", "w") is None


def test_extra_of_an_event() -> None:
    event = parse_event(
        {
            "event_id": "cbevt_1",
            "event_type": "workflow.completed",
            "occurred_at": 1767225600,
            "workflow_run_id": "cbwfr_1",
            "data": {"workflow_name": "w", "status": "completed", "output": {"n": 1}},
        }
    )
    extra = extra_for_event(event)
    assert extra == {
        "event_id": "cbevt_1",
        "event_type": "workflow.completed",
        "workflow_run_id": "cbwfr_1",
        "workflow_name": "w",
        "status": "completed",
        "checkpoint": None,
        "occurred_at": "2026-01-01T00:00:00+00:00",
        "output": {"n": 1},
        "output_truncated": False,
    }
    assert tuple(extra) == EXTRA_KEYS
    json.dumps(extra)
    current = parse_event({"event_id": "e", "event_type": "WorkflowRun.Completed", "data": {"workflow_run_id": "r"}})
    assert extra_for_event(current, workflow_name="from-api", status="completed")["workflow_name"] == "from-api"


def test_output_is_size_capped() -> None:
    fits = {"text": "x" * (MAX_OUTPUT_BYTES - len('{"text":""}'))}
    kwargs = {"event_id": "e", "event_type": "t", "workflow_run_id": "r", "workflow_name": "w", "status": "completed"}
    assert asset_event_extra(**kwargs, output=fits)["output"] == fits
    too_big = asset_event_extra(**kwargs, output={"text": fits["text"] + "x"})
    assert (too_big["output"], too_big["output_truncated"]) == (None, True)
    not_json = asset_event_extra(**kwargs, output={"when": datetime(2026, 1, 1, tzinfo=UTC)})
    assert (not_json["output"], not_json["output_truncated"]) == (None, True)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("quarterly-privacy-sweep", {}),
        ("a sweep/with slashes", {"conn_id": "other_conn", "failed": True}),
        ("sweep", {"checkpoint": "vendors selected"}),
    ],
)
def test_the_workflow_is_read_back_from_its_asset_uri(name: str, kwargs: dict[str, Any]) -> None:
    assert workflow_of_asset_uri(workflow_asset_uri(name, **kwargs)) == name


@pytest.mark.parametrize("uri", ["coverbase://c/other/x", "s3://b/workflows/w/completed", "coverbase://x", ""])
def test_a_uri_that_is_not_a_workflow_asset_names_no_workflow(uri: str) -> None:
    assert workflow_of_asset_uri(uri) is None
