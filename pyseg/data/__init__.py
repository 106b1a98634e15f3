"""Datasets: the built-in synthetic pets set, the Oxford-IIIT Pets loader and a generic
folder dataset (:mod:`pyseg.data.folder`).

``resolve_dataset(name_or_path, split=..., img_size=..., task=...)`` turns what a user
typed after ``--data`` into a ``torch.utils.data.Dataset``: a dataset registered by a
plugin (the built-in ones by ``pyseg_plugins.datasets``), or a folder.
"""

import os
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from pyseg import registry
from pyseg.data.folder import folder_dataset
from pyseg.data.oxford import oxford_pets
from pyseg.data.patch_hiding import HideAndSeek
from pyseg.data.synthetic import SEGMENTATION_CLASSES, SPECIES, SyntheticPets, synthetic_pets

__all__ = [
    "SEGMENTATION_CLASSES",
    "SPECIES",
    "HideAndSeek",
    "SyntheticPets",
    "resolve_dataset",
    "synthetic_pets",
]


def resolve_dataset(data: str, split: str, img_size: int, task: str = "segmentation",
                    seed: int = 0, train_length: int | None = None,
                    val_length: int | None = None) -> tuple[Dataset[Any], list[str]]:
    """``(dataset, class_names)`` for ``--data``: a registered dataset name, or a folder in
    the folder-dataset layout (``classes.txt``, ``images/``, ``masks/``: see
    :mod:`pyseg.data.folder`) or the Oxford Pets layout. Raises ``ValueError`` with one
    readable line otherwise.

    ``seed`` and the split's length (``train_length`` for ``split="train"``, else
    ``val_length``; None: the dataset's default) go to datasets that declare them in their
    :attr:`~pyseg.registry.DatasetSpec.options`. ``img_size`` and ``task`` go to the dataset
    factory.

    Example::

        >>> from pyseg.data import resolve_dataset
        >>> ds, names = resolve_dataset("synthetic-pets", "val", img_size=16, val_length=2)
        >>> len(ds), names
        (2, ['foreground', 'background', 'contour'])
        >>> resolve_dataset("no-such-set", "val", img_size=16)
        Traceback (most recent call last):
        ...
        ValueError: no dataset named 'no-such-set' and no such folder
    """
    spec = None
    if os.sep not in data and not data.startswith("."):
        try:
            spec = registry.get_dataset(data)
        except registry.UnknownNameError:
            pass  # perhaps a folder
    if spec is None:
        path = Path(data).expanduser()
        if not path.exists():
            raise ValueError(f"no dataset named {data!r} and no such folder")
        is_folder_layout = (path / "classes.txt").exists() or (path / "masks").is_dir()
        factory = folder_dataset if is_folder_layout else oxford_pets
        ds = factory(path, split=split, img_size=img_size, task=task)
        return ds, list(ds.class_names)
    if task not in spec.tasks:
        raise ValueError(f"dataset {data!r} provides {', '.join(sorted(spec.tasks))}, "
                         f"not {task}")
    options: dict[str, Any] = {}
    if "seed" in spec.options:
        options["seed"] = seed
    length = train_length if split == "train" else val_length
    if "length" in spec.options and length is not None:
        options["length"] = length
    ds = spec.fn(root=None, split=split, img_size=img_size, task=task, **options)
    names = list(getattr(ds, "class_names", None) or spec.class_names)
    return ds, names
