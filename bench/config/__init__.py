"""What a run is asked to do, before anything loads: every option with its default, help
and range (``options``), the checks on them (``validate``), what they resolve to on this
machine (``machine``: device, precision, threads) and which of them a kept cell must match
(``identity``)."""
