"""Built-in datasets: ``synthetic-pets`` (the default, no download), ``oxford-pets`` and
``folder`` (images + class-index masks + classes.txt)."""

from __future__ import annotations

from pyseg.hookspecs import hookimpl


@hookimpl
def pyseg_datasets() -> list:
    from pyseg.data import builtin_datasets
    from pyseg.data.folder import folder_dataset
    from pyseg.registry import Dataset

    return builtin_datasets() + [Dataset(
        "folder", folder_dataset, task="segmentation",
        summary="images/ + masks/ (class-index PNGs, 255 ignored) + classes.txt from --data ROOT",
    )]
