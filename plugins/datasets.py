"""Built-in datasets: ``synthetic-pets`` (the default, no download), ``oxford-pets`` and
``folder`` (images + class-index masks + classes.txt).

The datasets themselves live in :mod:`pyseg.data`; this plugin declares them, and the rest
of pyseg finds them through the registry like any other plugin's.
"""

from __future__ import annotations

from pyseg.data.folder import folder_dataset
from pyseg.data.oxford import oxford_pets
from pyseg.data.synthetic import SEGMENTATION_CLASSES, synthetic_pets
from pyseg.hookspecs import hookimpl
from pyseg.registry import DatasetSpec


@hookimpl
def pyseg_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            "synthetic-pets", synthetic_pets,
            summary="procedural cats and dogs on cluttered backgrounds with trimaps "
                    "(no download)",
            tasks=("segmentation", "classification"), class_names=SEGMENTATION_CLASSES,
            options=("seed", "length"),
        ),
        DatasetSpec(
            "oxford-pets", oxford_pets,
            summary="Oxford-IIIT Pets (images/*.jpg + annotations/trimaps/*.png) from "
                    "--data ROOT",
            tasks="segmentation", class_names=SEGMENTATION_CLASSES,
        ),
        DatasetSpec(
            "folder", folder_dataset,
            summary="images/ + masks/ (class-index PNGs, 255 ignored) + classes.txt from "
                    "--data ROOT",
            tasks="segmentation",
        ),
    ]
