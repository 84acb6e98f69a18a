"""The exactly-once start: which run a try of a task instance attaches to, and which key it sends.

No I/O and no Airflow here: :func:`attach` is given the two API calls it may make (read a run,
start one under a key's generation) and the record an earlier try left, and decides. The operator
supplies the calls (through its hook) and stores the record (Airflow 3.3's task state store).

**The key.** Every start sends an ``Idempotency-Key`` derived from the task instance (dag id, task
id, run id, map index), the first try of the current *chain* of tries (so a clear, which starts a
new chain, starts a new run) and the workflow (:func:`derive_idempotency_key`). It is stable across
the retries of a chain, so a lost POST answer or a worker dying right after the POST is covered:
the next try sends the same key and the API replays the run instead of starting another.

**The decision.** A run still going or completed is attached to. A run that ended ``failed`` or
``cancelled`` is not: the retry starts a fresh run under the next *generation* of the chain's key.

- With a record of this chain and workflow (Airflow >= 3.3): read the recorded run. Gone or ended
  badly: start generation ``+1`` (or the same generation, when the run is gone).
- Without one (Airflow 3.2, or the worker died before writing it): replay the chain's keys in order,
  generation 0 up to the try's place in the chain. A key used before replays its run (a replay starts
  nothing); the first unused key starts one. The walk stops at the first run not ended badly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_coverbase.models import UNSUCCESSFUL_STATUSES, WorkflowRun
from airflow_provider_coverbase.waiting.progress import describe_run

__all__ = [
    "RESTART_AFTER",
    "STATE_KEY",
    "Attached",
    "StartRecord",
    "Started",
    "attach",
    "chain_of",
    "derive_idempotency_key",
]

#: Key of the operator's record in Airflow 3.3's task state store.
STATE_KEY = "coverbase_workflow_run"
#: A run that ended in one of these is not attached to: the next try starts a fresh one.
RESTART_AFTER = UNSUCCESSFUL_STATUSES


def derive_idempotency_key(
    *,
    dag_id: str,
    task_id: str,
    run_id: str,
    map_index: int,
    chain: int,
    workflow: str,
    generation: int = 0,
) -> str:
    """The idempotency key of one logical run of one task instance.

    Stable across Airflow retries (the try number is not in it), unique across workflows (one key
    covers every workflow name in the current API), new after a clear (``chain`` is the first try
    of the current chain of tries), and new for each fresh run the same chain starts after a
    failed one (``generation``). Readable prefix, hashed identity: at most 200 ASCII characters.
    """
    identity = json.dumps([dag_id, task_id, run_id, map_index, chain, workflow, generation], ensure_ascii=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"airflow:{dag_id[:70]}:{task_id[:70]}:{digest}"


def chain_of(*, try_number: int, max_tries: int, retries: int | None) -> tuple[int, int]:
    """``(chain, try_in_chain)``: the first try number of the current chain of tries, and this try's place in it.

    Airflow raises ``max_tries`` by ``retries + 1`` on each clear, so ``max_tries - retries + 1`` is
    the first try of the current chain (at least 1); ``try_in_chain`` counts from 0.
    """
    chain = max(1, int(max_tries) - int(retries or 0) + 1)
    return chain, max(0, int(try_number) - chain)


@dataclass(frozen=True, slots=True)
class StartRecord:
    """What the operator stores after a start: the chain, the key generation and the run it started."""

    chain: int
    generation: int
    workflow: str
    workflow_run_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "generation": self.generation,
            "workflow": self.workflow,
            "workflow_run_id": self.workflow_run_id,
        }

    @classmethod
    def from_json(cls, value: Any, *, chain: int, workflow: str) -> StartRecord | None:
        """The stored record when it belongs to this chain and workflow, else ``None``.

        A record of an earlier chain (the task was cleared) or of another workflow (the DAG changed)
        is not this try's business.
        """
        if not isinstance(value, dict) or value.get("chain") != chain or value.get("workflow") != workflow:
            return None
        return cls(chain, int(str(value["generation"])), workflow, str(value["workflow_run_id"]))


@dataclass(frozen=True, slots=True)
class Started:
    """The answer to one start: the run as read right after, and whether the API replayed it."""

    run: WorkflowRun
    #: The key was used before: the run is one an earlier call started (legacy API only says so).
    replayed: bool


@dataclass(frozen=True, slots=True)
class Attached:
    """The decision: the run this try waits for, under which generation, and who started it."""

    run: WorkflowRun
    generation: int
    #: The run is one an earlier try started (as far as the API lets us tell).
    found_earlier: bool

    def record(self, chain: int, workflow: str) -> StartRecord:
        """The record to store, so the next try of the chain finds this run."""
        return StartRecord(chain, self.generation, workflow, self.run.workflow_run_id)


def attach(
    *,
    record: StartRecord | None,
    try_in_chain: int,
    read: Callable[[str], WorkflowRun | None],
    start: Callable[[int], Started],
    warn: Callable[[str], None],
) -> Attached:
    """Find the run this try attaches to, starting one only when no earlier try's run can be used.

    :param record: The record of this chain and workflow (:meth:`StartRecord.from_json`), if any.
    :param try_in_chain: This try's place in its chain (:func:`chain_of`).
    :param read: Reads a run by id; ``None`` when the API does not know it.
    :param start: Starts the workflow under the chain key's ``generation`` and reads the run back.
    :param warn: Told why an earlier run is not attached to, before the fresh start.
    """
    if record is not None:
        generation = record.generation
        current = read(record.workflow_run_id)
        if current is not None and current.status in RESTART_AFTER:
            warn(f"Earlier {describe_run(current)} ended {current.api_status}: starting a fresh run")
            generation += 1
            current = None
        if current is not None:
            return Attached(current, generation, found_earlier=True)
        started = start(generation)
        # Replayed: the worker died after this POST, before it wrote the record.
        return Attached(started.run, generation, found_earlier=started.replayed)
    # Only the legacy API says when it replays (a 409); the current API's verbatim 201 replay looks
    # like a new run, so there the try cannot tell and claims nothing.
    generation = 0
    while True:
        started = start(generation)
        run = started.run
        if run.status not in RESTART_AFTER or generation >= try_in_chain:
            return Attached(run, generation, found_earlier=started.replayed)
        warn(f"Earlier {describe_run(run)} ended {run.api_status}: moving on to a fresh run")
        generation += 1
