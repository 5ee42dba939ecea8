"""Consumers: the inference workers, the learner and the join store between them."""
