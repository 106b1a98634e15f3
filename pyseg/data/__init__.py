"""Datasets: the built-in synthetic pets set and the Oxford-IIIT Pets loader.

``resolve_dataset(name_or_path, split=..., img_size=..., task=...)`` turns what a user
typed after ``--data`` into a ``torch.utils.data.Dataset``.
"""

from pyseg.data.synthetic import SEGMENTATION_CLASSES, SPECIES, SyntheticPets, synthetic_pets
from pyseg.data.patch_hiding import HideAndSeek  # noqa: F401

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


def _registry_dataset(name: str):
    from pyseg import registry

    get = getattr(registry, "get_dataset", None)
    if get is not None:
        try:
            return get(name)
        except (KeyError, LookupError, ValueError):
            pass
    for spec in builtin_datasets():
        if spec.name == name:
            return spec
    return None


def resolve_dataset(data: str, split: str, img_size: int, task: str = "segmentation",
                    seed: int = 0, train_length: int | None = None,
                    val_length: int | None = None):
    """``(dataset, class_names)`` for ``--data``: a registered dataset name, or a folder in
    the Oxford Pets layout. Raises ``ValueError`` with one readable line otherwise."""
    import os
    from pathlib import Path

    spec = None if (os.sep in data or data.startswith(".")) else _registry_dataset(data)
    if spec is None:
        path = Path(data).expanduser()
        if not path.exists():
            raise ValueError(f"no dataset named {data!r} and no such folder")
        from pyseg.data.oxford import oxford_pets

        ds = oxford_pets(path, split=split, img_size=img_size, task=task)
        return ds, list(ds.class_names)
    if spec.task != task and task != "classification":
        raise ValueError(f"dataset {data!r} provides {spec.task}, not {task}")
    kwargs = {}
    if spec.name == "synthetic-pets":
        kwargs["seed"] = seed
        length = train_length if split == "train" else val_length
        if length is not None:
            kwargs["length"] = length
    ds = spec.factory(root=None, split=split, img_size=img_size, task=task, **kwargs)
    names = list(getattr(ds, "class_names", None) or spec.class_names)
    return ds, names
