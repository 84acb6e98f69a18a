"""One API call as both clients send it: the request, how to read its answer, and what it is for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

__all__ = ["LIST_RUNS_PATH", "Call"]

T = TypeVar("T")

#: The list endpoint (current API only).
LIST_RUNS_PATH = "/v1/workflows/runs"


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """A request ready to send (the same object on every retry) and how to read its answer."""

    request: httpx.Request
    parse: Callable[[httpx.Response], T]
    #: What the caller is doing, for messages: "start workflow 'x'".
    action: str
    workflow_name: str | None = None
    workflow_run_id: str | None = None
    idempotency_key: str | None = None
    #: Run-starting calls: a 409 carrying a run is a replay, and the run's workflow is checked.
    starts_run: bool = False
    workflow_definition_id: str | None = None
    #: The caller chose (or derived) the key, so an earlier call may have used it already.
    caller_key: bool = False
    #: The GET that reads a run a 409 replay named without its status (see ``ClientCore.finish``).
    reads_replay: bool = False
    #: ...and that 409 answered the first attempt, so the run is an earlier call's.
    replay_of_earlier_call: bool = False

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        return self.request.url.raw_path.decode("ascii").split("?", 1)[0]
