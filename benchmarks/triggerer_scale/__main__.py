"""``python -m benchmarks.triggerer_scale``: see the package docstring."""

from benchmarks.triggerer_scale.cli import main

main()
