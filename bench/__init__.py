"""Colorbench: train one generator per loss combination and compare them.

Every stage is a plain function::

    from bench.config.options import make_config
    from bench.run.runner import run_benchmark
    out = run_benchmark(make_config("quick", losses="l1,100*l1+gan", data="photos/"))
"""
__version__ = "0.1.0"
