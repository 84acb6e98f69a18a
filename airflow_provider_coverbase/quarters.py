"""Jinja helpers and the schedule for DAGs that sweep by quarter. No Airflow imports.

Register :data:`FILTERS` with ``DAG(user_defined_filters=FILTERS)``, then use :data:`QUARTER` and
:data:`QUARTER_DUE_DATE` in templated fields; :data:`QUARTERLY` is the schedule. A scheduled run
uses its data interval; a manual run (which has no logical date, and so no data interval, in
Airflow 3) uses the moment it was triggered.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["FILTERS", "INTERVAL_END", "INTERVAL_START", "QUARTER", "QUARTERLY", "QUARTER_DUE_DATE", "quarter_label"]

#: Schedule: at midnight on the first day of each quarter. Airflow's ``"@quarterly"`` preset is the
#: same, but only from Airflow 3.3.
QUARTERLY = "0 0 1 */3 *"

#: Jinja expression: the data interval's start, or ``dag_run.run_after`` for a manual run.
INTERVAL_START = (
    "(data_interval_start if data_interval_start is defined and data_interval_start is not none else dag_run.run_after)"
)
#: Jinja expression: the data interval's end, or ``dag_run.run_after`` for a manual run.
INTERVAL_END = (
    "(data_interval_end if data_interval_end is defined and data_interval_end is not none else dag_run.run_after)"
)


def quarter_label(moment: datetime) -> str:
    """``2026-Q4`` for any moment from October to December 2026."""
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


#: Filters to pass as ``user_defined_filters``.
FILTERS = {"quarter_label": quarter_label}
#: Template: the quarter being swept, e.g. ``2026-Q3``.
QUARTER = "{{ " + INTERVAL_START + " | quarter_label }}"
#: Template: 30 days after the interval ends, as ``YYYY-MM-DD``.
QUARTER_DUE_DATE = "{{ (" + INTERVAL_END + " + macros.timedelta(days=30)) | ds }}"
