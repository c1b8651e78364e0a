"""Reading finished runs: the numbers (``summary``), the paired comparisons (``compare``),
the figures (``figures``), the val photos behind them (``photos``) and report.md
(``build``). Never imports train/ or run/."""
