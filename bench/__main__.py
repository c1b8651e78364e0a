"""``python -m bench``: the ``bench`` command, where its script is not on PATH."""
from bench.cli import main

main(prog_name="bench")
