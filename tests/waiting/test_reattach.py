"""The exactly-once start decision against a fake API that replays keys as Coverbase does."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from airflow_provider_coverbase.models import WorkflowRun
from airflow_provider_coverbase.waiting.reattach import (
    STATE_KEY,
    Attached,
    Started,
    StartRecord,
    attach,
    chain_of,
    derive_idempotency_key,
)


@dataclass
class FakeAPI:
    """Runs by id; one run per key generation (a used key replays its run); counts the calls."""

    runs: dict[str, WorkflowRun] = field(default_factory=dict)
    by_generation: dict[int, str] = field(default_factory=dict)
    starts: list[int] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Whether a replay says so (the legacy API's 409); the current API's replay looks new.
    says_replayed: bool = True

    def add(self, generation: int, status: str) -> str:
        run_id = f"cbwr_{generation}"
        self.runs[run_id] = WorkflowRun.model_validate(
            {"workflow_run_id": run_id, "status": status, "workflow_name": "sweep"}
        )
        self.by_generation[generation] = run_id
        return run_id

    def read(self, workflow_run_id: str) -> WorkflowRun | None:
        self.reads.append(workflow_run_id)
        return self.runs.get(workflow_run_id)

    def start(self, generation: int) -> Started:
        self.starts.append(generation)
        replayed = generation in self.by_generation
        run_id = self.by_generation[generation] if replayed else self.add(generation, "running")
        return Started(self.runs[run_id], replayed=replayed and self.says_replayed)

    def attach(self, record: StartRecord | None, try_in_chain: int) -> Attached:
        return attach(
            record=record, try_in_chain=try_in_chain, read=self.read, start=self.start, warn=self.warnings.append
        )


def test_first_try_starts_generation_zero() -> None:
    api = FakeAPI()
    attached = api.attach(None, try_in_chain=0)
    assert (attached.run.workflow_run_id, attached.generation, attached.found_earlier) == ("cbwr_0", 0, False)
    assert api.starts == [0]
    assert api.warnings == []


def test_a_retry_without_a_record_replays_the_run_still_going() -> None:
    api = FakeAPI()
    api.add(0, "running")
    attached = api.attach(None, try_in_chain=1)
    assert attached.run.workflow_run_id == "cbwr_0"
    assert attached.found_earlier
    assert api.starts == [0]  # a replay only: no fresh run
    assert len(api.runs) == 1


def test_a_replay_the_api_does_not_announce_claims_nothing() -> None:
    api = FakeAPI(says_replayed=False)
    api.add(0, "completed")
    attached = api.attach(None, try_in_chain=1)
    assert attached.run.workflow_run_id == "cbwr_0"
    assert not attached.found_earlier
    assert len(api.runs) == 1


def test_a_retry_without_a_record_moves_past_failed_runs_in_order() -> None:
    api = FakeAPI()
    api.add(0, "failed")
    api.add(1, "cancelled")
    attached = api.attach(None, try_in_chain=2)
    assert (attached.run.workflow_run_id, attached.generation, attached.found_earlier) == ("cbwr_2", 2, False)
    assert api.starts == [0, 1, 2]
    assert api.warnings == [
        "Earlier run cbwr_0 of workflow 'sweep' ended failed: moving on to a fresh run",
        "Earlier run cbwr_1 of workflow 'sweep' ended cancelled: moving on to a fresh run",
    ]


def test_the_walk_stops_at_the_try_s_own_generation() -> None:
    """Try 0 of a chain whose key already ran and failed (a lost answer): it waits for that run, starts none."""
    api = FakeAPI()
    api.add(0, "failed")
    attached = api.attach(None, try_in_chain=0)
    assert attached.run.workflow_run_id == "cbwr_0"
    assert attached.run.status == "failed"
    assert api.starts == [0]
    assert len(api.runs) == 1
    assert api.warnings == []


@pytest.mark.parametrize("status", ["running", "completed", "paused"])
def test_a_recorded_run_not_ended_badly_is_attached_to_without_a_post(status: str) -> None:
    api = FakeAPI()
    run_id = api.add(3, status)
    attached = api.attach(StartRecord(1, 3, "sweep", run_id), try_in_chain=5)
    assert (attached.run.workflow_run_id, attached.generation, attached.found_earlier) == (run_id, 3, True)
    assert api.starts == []
    assert api.reads == [run_id]


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_recorded_run_that_ended_badly_starts_the_next_generation(status: str) -> None:
    api = FakeAPI()
    run_id = api.add(0, status)
    attached = api.attach(StartRecord(1, 0, "sweep", run_id), try_in_chain=1)
    assert (attached.run.workflow_run_id, attached.generation, attached.found_earlier) == ("cbwr_1", 1, False)
    assert api.starts == [1]
    assert api.warnings == [f"Earlier run cbwr_0 of workflow 'sweep' ended {status}: starting a fresh run"]


def test_a_recorded_run_the_api_lost_is_started_again_under_the_same_key() -> None:
    """The key replays if the POST reached the server; otherwise it starts the run once."""
    api = FakeAPI()
    api.add(2, "running")
    attached = api.attach(StartRecord(1, 2, "sweep", "cbwr_unknown"), try_in_chain=0)
    assert (attached.run.workflow_run_id, attached.generation, attached.found_earlier) == ("cbwr_2", 2, True)
    assert api.starts == [2]


def test_the_record_round_trips_and_belongs_to_one_chain_and_workflow() -> None:
    record = StartRecord(chain=4, generation=1, workflow="sweep", workflow_run_id="cbwr_9")
    stored = record.to_json()
    assert stored == {"chain": 4, "generation": 1, "workflow": "sweep", "workflow_run_id": "cbwr_9"}
    assert StartRecord.from_json(stored, chain=4, workflow="sweep") == record
    assert StartRecord.from_json(stored, chain=5, workflow="sweep") is None  # cleared: a new chain
    assert StartRecord.from_json(stored, chain=4, workflow="other") is None
    assert StartRecord.from_json(None, chain=4, workflow="sweep") is None
    assert StartRecord.from_json("garbage", chain=4, workflow="sweep") is None
    attached = Attached(WorkflowRun.model_validate({"workflow_run_id": "cbwr_9", "status": "running"}), 1, False)
    assert attached.record(4, "sweep") == record
    assert STATE_KEY == "coverbase_workflow_run"  # stored by earlier releases: changing it loses records


@pytest.mark.parametrize(
    ("try_number", "max_tries", "retries", "expected"),
    [
        (1, 2, 2, (1, 0)),  # first try of a task with two retries
        (3, 2, 2, (1, 2)),  # its last retry
        (4, 5, 2, (4, 0)),  # first try after a clear (Airflow raised max_tries by retries + 1)
        (5, 5, 2, (4, 1)),
        (1, 0, None, (1, 0)),  # no retries
    ],
)
def test_chain_of(try_number: int, max_tries: int, retries: int | None, expected: tuple[int, int]) -> None:
    assert chain_of(try_number=try_number, max_tries=max_tries, retries=retries) == expected


def key(dag_id: str = "d", task_id: str = "t", chain: int = 1, workflow: str = "sweep", **more: int) -> str:
    return derive_idempotency_key(
        dag_id=dag_id,
        task_id=task_id,
        run_id="r",
        map_index=more.get("map_index", -1),
        chain=chain,
        workflow=workflow,
        generation=more.get("generation", 0),
    )


def test_keys_differ_by_chain_workflow_map_index_and_generation() -> None:
    first = key()
    assert first.startswith("airflow:d:t:")
    assert first == key(generation=0)  # stable across the retries of a chain
    others = {key(chain=2), key(workflow="other"), key(generation=1), key(map_index=0)}
    assert len(others) == 4
    assert first not in others
    long = key(dag_id="d" * 300, task_id="t" * 300)
    assert len(long) <= 200
    assert long.isascii()
