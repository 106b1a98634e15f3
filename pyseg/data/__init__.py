"""Datasets: the built-in synthetic pets set and the Oxford-IIIT Pets loader.

``resolve_dataset(name_or_path, split=..., img_size=..., task=...)`` turns what a user
typed after ``--data`` into a ``torch.utils.data.Dataset``.
"""

from pyseg.data.synthetic import SEGMENTATION_CLASSES, SPECIES, SyntheticPets, synthetic_pets

__all__ = ["SEGMENTATION_CLASSES", "SPECIES", "SyntheticPets", "synthetic_pets"]


def builtin_datasets() -> list:
    """The dataset specs registered by the built-in plugin ``pyseg_plugins.datasets``."""
    from pyseg.registry import Dataset

    specs = [
        Dataset(
            "synthetic-pets", synthetic_pets, task="segmentation",
            summary="procedural cats and dogs on cluttered backgrounds with trimaps (no download)",
            class_names=SEGMENTATION_CLASSES,
        ),
    ]
    try:
        from pyseg.data.oxford import oxford_pets
    except ImportError:  # pragma: no cover - during development only
        return specs
    specs.append(Dataset(
        "oxford-pets", oxford_pets, task="segmentation",
        summary="Oxford-IIIT Pets (images/*.jpg + annotations/trimaps/*.png) from --data ROOT",
        class_names=SEGMENTATION_CLASSES,
    ))
    return specs
