"""Built-in datasets: ``synthetic-pets`` (the default, no download) and ``oxford-pets``."""

from __future__ import annotations

from pyseg.hookspecs import hookimpl


@hookimpl
def pyseg_datasets() -> list:
    from pyseg.data import builtin_datasets

    return builtin_datasets()
