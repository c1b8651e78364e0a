"""``bench run``: the stages of a run (``runner``, ``stages``), what a rerun may keep
(``reuse``), how a run stops and resumes (``stop``), cells as jobs (``job``, launched by
``launch`` through submitit) and where each cell stands (``status``)."""
