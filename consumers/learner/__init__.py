"""The learner: the ``riverflow learn`` worker, active or standing by (``worker``); one active
term from loading the latest snapshot to stepping down (``session``); the model, joins and
evaluation each message updates (``state``), where records wait for their match
(``join_store``), where reading resumes (``checkpoint``) and the fenced snapshot writer
(``model_publisher``)."""
