"""How the provider waits for a workflow run, free of I/O and of Airflow.

- :mod:`.schedule`: when to poll next (the adaptive pace, the shared wake-up grid).
- :mod:`.errors`: what a failed poll means (give up, or back off and poll again).
- :mod:`.reattach`: the exactly-once start: which run a try of a task attaches to, and which key it sends.
- :mod:`.progress`: what changed between two readings of a run, and the error a finished run means.
- :mod:`.pull_watch`: which finished runs are new to a pull watcher (the asset watcher's bookkeeping).

The operator, the sensor, the run trigger and the asset watcher drive these; none of them decides
any of it on its own.
"""
