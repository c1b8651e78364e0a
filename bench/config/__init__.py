"""What a run is asked to do, before anything loads: every option with its default, help
and range (``options``), the checks on them (``rules``: those that need no registry and no
torch, which ``bench run`` applies at once; ``validate``: all of them), what they resolve to
on this machine (``machine``: device, precision, threads) and which of them a kept cell
must match (``identity``)."""
