"""Inference: the ``riverflow infer`` worker (``worker``), how its outputs reach Kafka
(``delivery``, ``refusals``) and which model it serves (``model_follower``)."""
