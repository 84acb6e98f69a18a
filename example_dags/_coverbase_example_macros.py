"""Template helpers shared by the example DAGs (not a DAG: the leading underscore keeps it out of DagBag)."""

from __future__ import annotations

from datetime import datetime

# A scheduled run sweeps its data interval; a manual run (Airflow 3 gives it no logical date and so
# no data interval) sweeps the quarter it was triggered in.
QUARTER_START = (
    "(data_interval_start if data_interval_start is defined and data_interval_start is not none else dag_run.run_after)"
)
QUARTER_END = (
    "(data_interval_end if data_interval_end is defined and data_interval_end is not none else dag_run.run_after)"
)


def quarter_label(moment: datetime) -> str:
    """``2026-Q4`` for any moment in October to December 2026."""
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


FILTERS = {"quarter_label": quarter_label}
QUARTER = "{{ " + QUARTER_START + " | quarter_label }}"
DUE_DATE = "{{ (" + QUARTER_END + " + macros.timedelta(days=30)) | ds }}"
