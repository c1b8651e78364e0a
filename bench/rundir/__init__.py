"""The run folder on disk: its layout and file names (``layout``), atomic writes (``write``),
the one checked reader of each file (``read``) and the locks that keep one writer per run
and per cell (``lock``). Both ``bench run`` and the reading commands stand on it."""
