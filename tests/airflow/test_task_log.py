"""What the task log and errors say: links Airflow's log view can follow, honest reattach lines, empty input.

Against the emulator over loopback, both dialects; Airflow logs to stdout in these tests.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_coverbase.testing import CoverbaseEmulator
from tests.airflow.conftest import SWEEP, SWEEP_INPUT, FakeTI, MemoryStateStore, execute, make_context, operator

#: The log view's own pattern (airflow/ui/dist, Airflow 3.3.2): a URL after whitespace or at the start
#: of a line, up to the next whitespace. Whatever touches the URL becomes part of the link.
AIRFLOW_LOG_LINK = re.compile(r"(?:\s|^)(https?://(?:www\.|(?!www))[^\s.]+\.\S{2,}|www\.\S+\.\S{2,})")
ATTACHED = "of this chain is attached to run"


def message_of(line: str) -> str:
    """The logged message without the timestamp/level prefix and the logger suffix."""
    start = line.find("Coverbase run")
    return line[start:] if start >= 0 else line


# ---- 9. links in log lines ---------------------------------------------------------------------


@pytest.mark.parametrize("deferrable", [False, True], ids=["polling", "deferrable"])
@pytest.mark.parametrize("workflow", ["always-fails", SWEEP])
def test_every_logged_url_links_to_the_run_and_comes_early(
    emulator: CoverbaseEmulator, ti: FakeTI, capsys: pytest.CaptureFixture[str], deferrable: bool, workflow: str
) -> None:
    op = operator(workflow_name=workflow, input=SWEEP_INPUT if workflow == SWEEP else {}, deferrable=deferrable)
    texts: list[str] = []
    try:
        execute(op, make_context(ti))
    except AirflowException as exc:
        texts.append(str(exc))
    url = ti.xcoms["workflow_run_url"]
    texts += [line for line in capsys.readouterr().out.splitlines() if "http" in line]
    assert len(texts) >= 3  # the start, each status change, and (for the failure) the error

    for text in texts:
        links = AIRFLOW_LOG_LINK.findall(text)
        assert links == [url], text  # exactly the run's URL: no ")", ".", ";" or "," glued to it
        message = message_of(text)
        if message.startswith("Coverbase run failed"):
            # A failure: the reason first (what the log view would cut at 1280 px), the run and link after.
            assert message.index("Questionnaire template not found") < message.index(url), text
            assert f"(run {ti.xcoms['workflow_run_id']}, workflow '{workflow}', {url} )" in message, text
            continue
        assert message.startswith(f"Coverbase run {ti.xcoms['workflow_run_id']}"), text
        assert message.index(url) < 80, text  # before the long parts, which the log view may cut
        if "workflow" in message.lower():
            assert message.index(url) < message.lower().index("workflow"), text


def test_timeout_message_links_the_run(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    op = operator(workflow_name="stalled-forever", input={}, timeout=0.2)
    with pytest.raises(AirflowException) as info:
        execute(op, make_context(ti))
    message = str(info.value)
    assert AIRFLOW_LOG_LINK.findall(message) == [ti.xcoms["workflow_run_url"]]
    # The reason first (readable at 1280 px), the run and its link after it.
    assert message.index("still going in Coverbase") < message.index("http")


# ---- 10. "attached" only when an earlier try's run was really found ---------------------------


def test_first_try_never_claims_to_reattach(
    emulator: CoverbaseEmulator, capsys: pytest.CaptureFixture[str], store: MemoryStateStore | None
) -> None:
    execute(operator(wait_for_completion=False), make_context(FakeTI(try_number=1), store))
    assert ATTACHED not in capsys.readouterr().out


def test_retry_that_finds_the_earlier_run_says_so(
    emulator: CoverbaseEmulator, capsys: pytest.CaptureFixture[str], store: MemoryStateStore | None
) -> None:
    first = FakeTI(try_number=1)
    with pytest.raises(TaskDeferred):  # the worker "dies" while the run goes on
        operator(deferrable=True).execute(make_context(first, store))
    capsys.readouterr()
    second = FakeTI(try_number=2)
    execute(operator(wait_for_completion=False), make_context(second, store))
    out = capsys.readouterr().out
    run_id = first.xcoms["workflow_run_id"]
    claimed = f"Try 2 {ATTACHED} {run_id}, which an earlier try started" in out
    if store is not None or emulator.state.dialect == "legacy":
        assert claimed  # the state store's record, or the legacy API's 409 replay, says so
    else:
        # Airflow 3.2 on the current API: the verbatim 201 replay looks like a new run; claim nothing.
        assert ATTACHED not in out
    assert second.xcoms["workflow_run_id"] == run_id
    assert emulator.run_count() == 1


def test_retry_whose_own_post_started_the_run_does_not_claim_to_reattach(
    emulator: CoverbaseEmulator, capsys: pytest.CaptureFixture[str], store: MemoryStateStore | None
) -> None:
    # Try 1 failed before any request (empty input), so try 2's POST is the chain's first.
    with pytest.raises(AirflowFailException):
        operator(input="").execute(make_context(FakeTI(try_number=1), store))
    emulator.clear_requests()
    second = FakeTI(try_number=2)
    execute(operator(wait_for_completion=False), make_context(second, store))
    assert ATTACHED not in capsys.readouterr().out
    assert emulator.run_count() == 1


def test_retry_after_a_failed_run_starts_fresh_and_does_not_claim_to_reattach(
    emulator: CoverbaseEmulator, capsys: pytest.CaptureFixture[str], store: MemoryStateStore | None
) -> None:
    with pytest.raises(AirflowException, match="Coverbase run failed after checkpoint"):
        execute(operator(workflow_name="always-fails", input={}), make_context(FakeTI(try_number=1), store))
    capsys.readouterr()
    emulator.set_speed(0)  # try 2's fresh run stays running
    second = FakeTI(try_number=2)
    execute(operator(workflow_name="always-fails", input={}, wait_for_completion=False), make_context(second, store))
    out = capsys.readouterr().out
    assert "ended failed: moving on to a fresh run" in out or "ended failed: starting a fresh run" in out
    assert ATTACHED not in out
    assert emulator.run_count() == 2


# ---- 7. empty input fails before any request --------------------------------------------------


@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_empty_input_string_fails_before_any_request(emulator: CoverbaseEmulator, ti: FakeTI, value: str) -> None:
    emulator.clear_requests()
    with pytest.raises(AirflowFailException) as info:
        operator(input=value).execute(make_context(ti))
    message = str(info.value)
    assert f"the input rendered to {value!r}, an empty string" in message
    assert "input=None for no input" in message and "nothing was sent to Coverbase" in message
    assert emulator.requests == [] and emulator.run_count() == 0


def test_template_rendering_to_whitespace_fails_and_says_what_was_rendered(
    emulator: CoverbaseEmulator, ti: FakeTI
) -> None:
    with DAG("empty_input", schedule=None, params={"payload": "  "}):
        op = operator(workflow_name="adhoc-campaign", input="{{ params.payload }}")
    op.render_template_fields({"params": {"payload": "  "}})
    emulator.clear_requests()
    with pytest.raises(AirflowFailException, match=r"the input rendered to '  ', an empty string"):
        op.execute(make_context(ti))
    assert emulator.requests == []


@pytest.mark.parametrize("value", [None, {}, "{}"])
def test_none_and_empty_object_stay_valid(emulator: CoverbaseEmulator, ti: FakeTI, value: Any) -> None:
    result = execute(operator(workflow_name="adhoc-campaign", input=value, wait_for_completion=False), make_context(ti))
    assert result["workflow_name"] == "adhoc-campaign"
    posts = [r for r in emulator.requests if r["method"] == "POST"]
    assert [r["body"] for r in posts] == [{"input": {}}]


@pytest.fixture(params=[None, "store"], ids=["airflow-3.2-key-replay", "airflow-3.3-state-store"])
def store(request: pytest.FixtureRequest) -> MemoryStateStore | None:
    return MemoryStateStore() if request.param else None


@pytest.mark.parametrize("shape", ["detail", "bare", "flat", "nested"])
def test_airflow_3_2_retry_reattaches_through_every_legacy_replay_shape(
    coverbase_emulator: CoverbaseEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    shape: str,
) -> None:
    """The key-replay path (no task state store) reads the 409 replay whatever its envelope."""
    from tests.airflow.conftest import conn_value

    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_value(coverbase_emulator))
    coverbase_emulator.set_variants(conflict_shape=shape)
    first = FakeTI(try_number=1)
    with pytest.raises(TaskDeferred):  # the worker "dies" while the run goes on
        operator(deferrable=True).execute(make_context(first))
    second = FakeTI(try_number=2)
    result = execute(operator(), make_context(second))
    assert result["workflow_run_id"] == first.xcoms["workflow_run_id"]
    assert result["status"] == "completed"
    assert f"Try 2 {ATTACHED} {result['workflow_run_id']}" in capsys.readouterr().out
    assert coverbase_emulator.run_count() == 1
