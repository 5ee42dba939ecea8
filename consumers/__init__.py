"""Consumers: two subsystems, :mod:`riverflow.consumers.inference` (serve a prediction per reading)
and :mod:`riverflow.consumers.learner` (join labels to predictions, learn, publish models), and the
reader of the models topic both use (``snapshot_feed``)."""
