"""Accuracy tests: the flow-control scenarios of ``sim.py`` and ``live.py`` at CI size.

``bench/flow_accuracy.py`` runs the same scenarios at full size and reports their figures."""
