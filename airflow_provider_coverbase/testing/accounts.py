"""Orgs and what they may do: API keys, request budgets, limits, and the workflows each org has.

The store's methods take the emulator's shared lock. No Airflow imports, no client imports.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_coverbase.testing.config import Dialect, EmulatorConfig, OrgConfig, WorkflowDefinition


@dataclass(slots=True)
class _Window:
    """Requests counted in an org's current fixed window."""

    start: float = 0.0
    count: int = 0


class Accounts:
    """The orgs (by ID and by API key) with their limits and budgets, and the workflow definitions."""

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.orgs: dict[str, OrgConfig] = {}
        self.orgs_by_key: dict[str, OrgConfig] = {}
        self.workflows: dict[str, WorkflowDefinition] = {}
        self._windows: dict[str, _Window] = {}

    def reset(self, config: EmulatorConfig) -> None:
        """The configured orgs and workflows, with their configured limits and fresh budgets."""
        with self.lock:
            self.orgs = {o.org_id: o for o in config.orgs}
            self.orgs_by_key = {o.api_key: o for o in config.orgs}
            self.workflows = {w.name: w for w in config.workflows}
            self._windows.clear()

    def authenticate(self, authorization: str | None) -> OrgConfig | None:
        """The org of a ``Bearer`` API key, or ``None``."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.orgs_by_key.get(token.strip())

    def consume_budget(self, org: OrgConfig, now: float) -> int | None:
        """Count one request against the org's window; return ``retry_after`` when over budget."""
        limit = org.requests_per_window
        if limit is None:
            return None
        with self.lock:
            window = self._windows.setdefault(org.org_id, _Window(now, 0))
            if now >= window.start + org.window_seconds:
                window.start, window.count = now, 0
            if window.count >= limit:
                return max(1, math.ceil(window.start + org.window_seconds - now))
            window.count += 1
            return None

    def set_limits(self, org_id: str | None, limits: Mapping[str, Any]) -> None:
        """Set the limits of one org (all orgs when ``org_id`` is None) and restart its budget.

        ``limits``: ``requests_per_window`` and ``max_concurrent_runs`` (absent or ``None``:
        unlimited), ``window_seconds`` (absent or ``None``: unchanged).
        """
        with self.lock:
            for oid in [org_id] if org_id else list(self.orgs):
                old = self.orgs[oid]
                new = dataclasses.replace(
                    old,
                    requests_per_window=limits.get("requests_per_window"),
                    window_seconds=limits.get("window_seconds") or old.window_seconds,
                    max_concurrent_runs=limits.get("max_concurrent_runs"),
                )
                self.orgs[oid] = new
                self.orgs_by_key[new.api_key] = new
                self._windows.pop(oid, None)

    def add_workflow(self, definition: WorkflowDefinition) -> None:
        """Add or replace a definition; existing runs keep the definition they started with."""
        with self.lock:
            self.workflows[definition.name] = definition

    def _belongs(self, definition: WorkflowDefinition, org_id: str | None) -> bool:
        if definition.org is None or org_id is None:
            return True
        org = self.orgs.get(org_id)
        return definition.org == org_id or (org is not None and bool(org.name) and definition.org == org.name)

    def find_workflow(self, org_id: str | None, name: str) -> WorkflowDefinition | None:
        """The workflow called ``name`` that the org has (``None``: any org), or ``None``."""
        with self.lock:
            definition = self.workflows.get(name)
            return definition if definition is not None and self._belongs(definition, org_id) else None

    def find_definition_by_id(
        self, definition_id: str, dialect: Dialect, org_id: str | None = None
    ) -> WorkflowDefinition | None:
        """The workflow whose ID in ``dialect`` is ``definition_id`` and that the org has, or ``None``."""
        with self.lock:
            for definition in self.workflows.values():
                if definition.definition_id(dialect) == definition_id and self._belongs(definition, org_id):
                    return definition
            return None
