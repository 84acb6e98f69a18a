"""What waiting costs: N deferred triggers in one process and one event loop, ours beside the peers.

A triggerer runs every deferred task's trigger in one asyncio loop. This script does the same: one
*worker* process per kind and N runs N triggers (built from their serialized form, as the triggerer
does) in one loop, against a fake server in *another* process that answers each kind's own API shape:

- ``ours``: ``CoverbaseWorkflowRunTrigger``, ``GET /v1/workflows/runs/{id}`` (legacy contract, ``running``);
- ``http-sensor``: ``HttpSensorTrigger`` (providers-http), 404 until ready;
- ``http-event``: ``HttpEventTrigger`` (providers-http), 200 ``{"ready": false}`` until ready;
- ``dbt``: ``DbtCloudRunJobTrigger`` (providers-dbt-cloud), ``GET /api/v2/accounts/{a}/runs/{id}/``,
  status 3 (running); over TLS with a throw-away certificate, because the dbt hook always builds an
  ``https://`` URL;
- ``databricks``: ``DatabricksExecutionTrigger`` (providers-databricks), ``GET /api/2.2/jobs/runs/get``
  with a JSON body, ``life_cycle_state`` RUNNING.

Connections come from ``AIRFLOW_CONN_*`` variables (JSON form). The peers come from the ``bench`` extra
(``make bench-triggers`` installs them with ``pip install -e '.[testing,bench]'`` in ``.venv-bench``).

Rounds (``--rounds``):

- ``scale``: per N and kind, in a fresh worker: CPU seconds of the worker per 1,000 polls (median of
  ``--repeats`` windows), MB RSS per 1,000 waiting triggers, new TCP connections per 1,000 polls (accepted
  by the server), event-loop lag p99 while waiting (a 20 ms ticker), the longest loop stall while the
  triggers start, detection delay p50/p95 (the server turns run ``i`` terminal at a known time; the worker
  notes when each trigger yields), and setup CPU per trigger (CPU until every trigger has polled once,
  less one steady poll: it also holds what a first poll costs more than a steady one, such as the
  log lines of a first reading, and the loop's idle CPU meanwhile). Then the ratios of ours to each
  peer, and the issue's targets.
- ``setup``: setting up alone, measured directly: per N and kind, in a fresh worker, the CPU from
  creating N triggers until the loop is idle again, with the poll interval ``--setup-poll`` (10 h)
  so that ours has not polled yet (its first poll comes at a random point of the first interval):
  the trigger, the hook, the async connection lookup, parsing the connection, acquiring the shared
  client, preparing the request. The peers poll as soon as they start, so their figure includes one
  request each (the table says how many requests were made meanwhile).
- ``errors``: every kind at once (request rates, not CPU, so they may share the cores): HTTP 500s for
  ``--error-seconds``, then connection refused for as long, then the server is back and every run ends:
  requests (or connection attempts) per trigger per second, and what the triggers did.
- ``limit``: ours against the real emulator with a budget of ``--limit-rate`` requests/s and
  ``--limit-n`` triggers: the share of answers that were 429 and the gap before a trigger's next request
  after a 429 (a hot loop shows as gaps near zero).
- ``fortnight``: one run that lasts 14 days, on a simulated clock: the GETs it costs with the trigger's
  default settings and how long after its end the trigger noticed; shorter runs too, for the delay bound.

    .venv-bench/bin/python -m benchmarks.triggerer_scale            # everything (about 40 minutes on 2 cores)
    .venv-bench/bin/python -m benchmarks.triggerer_scale --quick    # N=100 and 1,000, short rounds (about 10 min)
    .venv-bench/bin/python -m benchmarks.triggerer_scale --n 1000 --kinds ours,databricks --rounds scale

The package: :mod:`.kinds` (ours and the peers), :mod:`.workers` (the worker process), :mod:`.bench`
(the processes), :mod:`.rounds` (scale, setup, errors), :mod:`.limit` (429 and the simulated
fortnight), :mod:`.cli`; the fake server, the fleet and the statistics are :mod:`benchmarks.harness`'s.
"""
