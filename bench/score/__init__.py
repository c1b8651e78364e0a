"""Scoring a generator on the val split: the metric registry and its pure functions
(``metrics``), the ``Scorer`` that runs them (``scorer``), the networks metrics declare
(``networks``), per-image scores kept for paired tests (``per_image``), the statistics
(``stats``) and how each number was made (``protocol``). Never imports train/ or run/."""
