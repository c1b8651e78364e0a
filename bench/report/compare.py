"""``bench compare``: a run's paired comparisons (``bench.report.paired``) said on the terminal
in the report's words (``bench.report.prose``): "l1 beats mse on de00 by 0.20 [0.11, 0.29],
p < 0.001 after Holm", one pair a line. The command reads the run through the names below.
"""
from __future__ import annotations

import pandas as pd

from bench.report.paired import HEADLINE, load_scores, pairwise, ranked_metrics
from bench.report.prose import compare_lines

__all__ = ["HEADLINE", "load_scores", "pairwise", "ranked_metrics", "terminal_table"]


def terminal_table(pairs: pd.DataFrame, metric: str) -> str:
    """``bench compare``'s account of one metric: what was tested, then each pair in words."""
    return "\n".join(compare_lines(pairs, metric))
