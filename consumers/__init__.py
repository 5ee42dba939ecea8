"""Consumers: two subsystems, :mod:`consumers.inference` (serve a prediction per reading) and
:mod:`consumers.learner` (join labels to predictions, learn, publish models), and the reader of
the models topic both use (``snapshot_feed``)."""
