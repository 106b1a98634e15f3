"""Pretrained encoders from files the user already has; nothing is ever downloaded.

* torchvision's VGG16 / VGG16-BN ``state_dict`` files (``vgg16-397923af.pth``,
  ``vgg16_bn-6c64b313.pth``) into the VGG encoders of FCN, DeconvNet and SegNet, through an
  explicit layer map (:func:`torchvision_vgg16_names`), with FCN's fc6/fc7 taken from
  torchvision's classifier reshaped to 7x7 and 1x1 convolutions as in the FCN paper;
* timm feature extractors (``timm.create_model(name, features_only=True)``) with weights
  from a ``.pth`` / ``.safetensors`` file.

A weights file is data: it is read with ``torch.load(weights_only=True)`` (or safetensors),
only if it is a regular file, and every tensor the encoder has must be in it with the right
shape, or :class:`EncoderWeightsError` names what is missing or does not fit.

The models that take pretrained encoders share :class:`PretrainedEncoderMixin`:
``encoder_parameters()``, ``set_encoder_frozen()`` (a frozen encoder gets no gradients and
its batch norms keep their statistics: they stay in eval mode) and ``input_norm``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from pyseg.engine.checkpoint import load_failure, open_regular_file

# The normalization ImageNet-trained weights expect, on RGB images in [0, 1]
# (torchvision's and timm's default; pyseg's datasets give [0, 1] RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_NORMS = ("imagenet", "none")

# torchvision's own file names (VGG16_Weights.IMAGENET1K_V1, VGG16_BN_Weights.IMAGENET1K_V1),
# looked up in torch.hub's cache, where torchvision keeps what it downloads.
TORCHVISION_FILES = {False: "vgg16-397923af.pth", True: "vgg16_bn-6c64b313.pth"}

# torchvision's VGG16 configuration "D" (torchvision.models.vgg.cfgs["D"]).
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
             512, 512, 512, "M")

_SHOWN = 5  # missing keys named in a message


class EncoderWeightsError(ValueError):
    """A weights file that cannot fill an encoder (missing, unreadable, wrong keys/shapes)."""


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """``x`` padded with zeros at the bottom and right to a multiple of ``multiple`` in height
    and width (the encoder's total stride); the models crop their output back."""
    ph, pw = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    return torch.nn.functional.pad(x, (0, pw, 0, ph)) if ph or pw else x


# ----------------------------------------------------------------------- reading files

def read_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors stored at ``path``: a ``state_dict`` saved with ``torch.save`` (read with
    ``weights_only=True``) or a ``.safetensors`` file. A training checkpoint holding the
    state_dict under ``"state_dict"`` or ``"model"`` (timm's, pyseg's) is unwrapped.

    Raises:
        EncoderWeightsError: not found, not a regular file, unreadable, pickled objects, or
            not a dict of tensors.
    """
    path = Path(path)
    with open_regular_file(path, EncoderWeightsError, "encoder_weights: file") as f:
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load as load_safetensors

                state = load_safetensors(f.read())
            else:
                state = torch.load(f, map_location="cpu", weights_only=True)
        except ImportError:
            raise EncoderWeightsError(
                f"encoder_weights: {path} is a .safetensors file and the safetensors package "
                "is not installed (pip install safetensors)") from None
        except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
            raise EncoderWeightsError(
                f"encoder_weights: cannot read {path}: {load_failure(e)}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise EncoderWeightsError(f"encoder_weights: {path} does not hold a state_dict "
                                  "(a dict of tensors)")
    return state


def torchvision_vgg16_file(batch_norm: bool) -> Path:
    """torchvision's cached VGG16 (``batch_norm=False``) or VGG16-BN file in torch.hub's
    cache (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``).

    Raises:
        EncoderWeightsError: the file is not there (nothing is downloaded); the message
            names the file and the folder.
    """
    name = TORCHVISION_FILES[batch_norm]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / name
    if not path.is_file():
        model = "vgg16_bn" if batch_norm else "vgg16"
        raise EncoderWeightsError(
            f"encoder_weights='torchvision': {name} is not in {folder}. Nothing is "
            f"downloaded: copy torchvision's {model} ImageNet file there (the one "
            f"torchvision.models.{model}(weights='IMAGENET1K_V1') downloads) or pass its "
            "path as encoder_weights")
    return path


# ----------------------------------------------------------------------- filling tensors

def _named(keys: Sequence[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + (f" and {len(keys) - _SHOWN} more"
                                       if len(keys) > _SHOWN else "")


def fill(targets: Sequence[tuple[Tensor, str, bool]], state: dict[str, Tensor],
         source: str, known: set[str] | None = None) -> None:
    """Copy ``state[key]`` into each target tensor; all are checked before any is written.

    Args:
        targets: ``(tensor of the model, key in the file, reshape)``: with ``reshape`` the
            file's tensor may have another shape with as many elements (a linear layer
            becoming a convolution); otherwise the shapes must be equal.
        state: the file's tensors. source: the file, for messages.
        known: every key the file's network has (the unused ones too, e.g. a classifier
            head); a key outside it means the file is another network's (a deeper ResNet's
            extra blocks would otherwise be ignored without a word).

    Raises:
        EncoderWeightsError: keys missing from the file (named, up to five, and counted),
            keys the expected network does not have, or a tensor whose shape does not fit
            (named with both shapes).
    """
    missing = [key for _, key, _ in targets if key not in state]
    if missing:
        raise EncoderWeightsError(
            f"encoder_weights: {source} lacks {len(missing)} of the {len(targets)} tensors "
            f"the encoder needs: {_named(missing)}")
    unknown = sorted(state.keys() - known) if known is not None else []
    if unknown:
        raise EncoderWeightsError(
            f"encoder_weights: {source} holds {len(unknown)} tensors that this network does "
            f"not have (another network's file?): {_named(unknown)}")
    for tensor, key, reshape in targets:
        found = state[key]
        fits = (found.numel() == tensor.numel()) if reshape else (found.shape == tensor.shape)
        if not fits:
            raise EncoderWeightsError(
                f"encoder_weights: {source}: {key} is {list(found.shape)} in the file, the "
                f"model needs {list(tensor.shape)}")
    with torch.no_grad():
        for tensor, key, _ in targets:
            tensor.copy_(state[key].reshape(tensor.shape))


def module_targets(module: nn.Module, prefix: str) -> list[tuple[Tensor, str, bool]]:
    """``fill`` targets for every tensor of ``module`` (parameters and buffers) from the
    file keys ``prefix.<name>`` (``<name>`` for an empty prefix). Batch norm's ``num_batches_tracked`` is left out: files
    saved before torch 0.4 (torchvision's VGG16-BN among them) do not have it."""
    return [(t, f"{prefix}.{name}" if prefix else name, False)
            for name, t in module.state_dict(keep_vars=True).items()
            if not name.endswith("num_batches_tracked")]


def torchvision_vgg16_names(batch_norm: bool) -> list[tuple[str, str | None]]:
    """torchvision's names for the 13 convolutions of ``vgg16(_bn).features`` and their batch
    norms (None without), in order: ``torchvision.models.vgg.make_layers`` appends conv,
    [batch norm,] ReLU per convolution and one max pool per stage, so VGG16's convolutions
    are ``features.0, 2, 5, 7, 10, ...`` and VGG16-BN's ``features.0, 3, 7, 10, 14, ...``
    with their batch norms at the next index."""
    names: list[tuple[str, str | None]] = []
    i = 0
    for v in VGG16_CFG:
        if v == "M":
            i += 1
            continue
        names.append((f"features.{i}", f"features.{i + 1}" if batch_norm else None))
        i += 3 if batch_norm else 2
    return names


def vgg16_targets(convs: Sequence[tuple[nn.Conv2d, nn.BatchNorm2d | None]],
                  batch_norm: bool) -> list[tuple[Tensor, str, bool]]:
    """``fill`` targets for an encoder's 13 (conv, batch norm or None) pairs, in order."""
    names = torchvision_vgg16_names(batch_norm)
    if len(convs) != len(names):
        raise AssertionError(f"a VGG16 encoder has {len(names)} convolutions, got {len(convs)}")
    targets = []
    for (conv, bn), (conv_name, bn_name) in zip(convs, names):
        targets += module_targets(conv, conv_name)
        if bn is not None and bn_name is not None:
            targets += module_targets(bn, bn_name)
    return targets


def torchvision_vgg16_keys(batch_norm: bool) -> set[str]:
    """Every key of torchvision's ``vgg16(_bn)`` state_dict (features and classifier)."""
    keys = {f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
    for conv, bn in torchvision_vgg16_names(batch_norm):
        keys |= {f"{conv}.weight", f"{conv}.bias"}
        if bn is not None:
            keys |= {f"{bn}.{p}" for p in ("weight", "bias", "running_mean", "running_var",
                                           "num_batches_tracked")}
    return keys


def fill_vgg16(targets: Sequence[tuple[Tensor, str, bool]], state: dict[str, Tensor],
               source: str, batch_norm: bool) -> None:
    """:func:`fill` from a torchvision VGG16(-BN) file: no key outside torchvision's."""
    fill(targets, state, source, torchvision_vgg16_keys(batch_norm))


def vgg16_encoder_convs(encoder: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """The (conv, following batch norm or None) pairs of ``encoder``, in module order."""
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = []
    for m in encoder.modules():
        if isinstance(m, nn.Conv2d):
            pairs.append((m, None))
        elif isinstance(m, nn.BatchNorm2d):
            pairs[-1] = (pairs[-1][0], m)
    return pairs


def resolve_vgg16(encoder_weights: str | os.PathLike, batch_norm: bool) -> tuple[dict, str]:
    """``(state, source)`` for a VGG16 ``encoder_weights`` argument: ``"torchvision"`` or a
    path."""
    if not isinstance(encoder_weights, (str, os.PathLike)):
        raise TypeError("encoder_weights must be a path or 'torchvision', got "
                        f"{type(encoder_weights).__name__}")
    path = (torchvision_vgg16_file(batch_norm) if encoder_weights == "torchvision"
            else Path(encoder_weights))
    state = read_weights(path)
    # A VGG16 file for the other batch-norm setting: say so rather than list missing keys.
    has_bn = "features.1.running_mean" in state
    if "features.0.weight" in state and has_bn != batch_norm:
        want, got = ("VGG16-BN", "VGG16") if batch_norm else ("VGG16", "VGG16-BN")
        raise EncoderWeightsError(
            f"encoder_weights: {path} holds {got} weights and this encoder is {want} "
            f"(batch_norm={batch_norm}): use the {want} file "
            f"({TORCHVISION_FILES[batch_norm]}) or set batch_norm to match")
    return state, str(path)


def check_vgg16_options(width: float, in_channels: int) -> None:
    """Pretrained VGG16 weights need the paper's widths and RGB input."""
    if width != 1.0:
        raise ValueError(f"encoder_weights needs width=1.0 (VGG16's channel counts), got "
                         f"width={width}")
    if in_channels != 3:
        raise ValueError(f"encoder_weights needs in_channels=3 (ImageNet RGB), got "
                         f"in_channels={in_channels}")


# ----------------------------------------------------------------------- timm

def import_timm():
    """The timm module, or an ImportError saying how to get it."""
    try:
        import timm
    except ImportError:
        raise ImportError("encoder='timm:...' needs the optional package timm "
                          "(pip install timm)") from None
    return timm


def timm_features(encoder: str, in_channels: int) -> nn.Module:
    """``timm.create_model(name, features_only=True, pretrained=False)`` for
    ``encoder="timm:NAME"``: never downloads; weights come from :func:`load_timm`."""
    if not isinstance(encoder, str) or not encoder.startswith("timm:") or encoder == "timm:":
        raise ValueError(f"encoder must be 'timm:NAME' (a timm model name), got {encoder!r}")
    timm = import_timm()
    name = encoder.partition(":")[2]
    try:
        return timm.create_model(name, features_only=True, pretrained=False,
                                 in_chans=in_channels)
    except RuntimeError as e:  # timm's "Unknown model"
        raise ValueError(f"encoder {encoder!r}: {e}") from None


def load_timm(features: nn.Module, encoder_weights: str | os.PathLike, encoder: str) -> None:
    """Fill the feature extractor of ``encoder`` (``"timm:NAME"``) from a file holding the
    weights of that timm model (the classifier's file: its head, absent from the feature
    extractor, is not used; a key the model does not have is refused)."""
    if encoder_weights == "torchvision":
        raise ValueError("encoder_weights='torchvision' is for the VGG16 encoders; a timm "
                         "encoder takes the path of a timm weights file")
    state = read_weights(encoder_weights)
    # The keys of the whole timm model (the feature extractor lacks its head), built on the
    # meta device: no memory, no random init.
    with torch.device("meta"):
        whole = import_timm().create_model(encoder.partition(":")[2], pretrained=False)
    known = set(whole.state_dict()) | set(features.state_dict())
    fill(module_targets(features, ""), state, str(encoder_weights), known)


# ----------------------------------------------------------------------- models

class ImageNetNormalize(nn.Module):
    """``(x - mean) / std`` with ImageNet's RGB mean and std, for [0, 1] RGB input: what
    ImageNet-trained encoders expect. The constants are buffers, so a checkpoint records
    that its model normalizes (and a model built without it refuses those weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def input_normalization(input_norm: str | None, encoder_weights: object,
                        in_channels: int) -> tuple[str, nn.Module]:
    """``(resolved name, module)`` for an ``input_norm`` argument: None means ImageNet's when
    ``encoder_weights`` is given and none otherwise."""
    name = input_norm if input_norm is not None else (
        "imagenet" if encoder_weights is not None else "none")
    if name not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)} or None, "
                         f"got {input_norm!r}")
    if name == "none":
        return name, nn.Identity()
    if in_channels != 3:
        raise ValueError(f"input_norm='imagenet' needs in_channels=3, got {in_channels}")
    return name, ImageNetNormalize()


class PretrainedEncoderMixin:
    """For models (``nn.Module`` subclasses listing this first) whose encoder may come from
    pretrained weights. Subclasses define :meth:`encoder_modules`.

    A frozen encoder's parameters have ``requires_grad=False`` and its modules stay in eval
    mode when the model trains, so batch norm keeps the pretrained statistics (as Keras does
    for a frozen base): a training step changes nothing in it.
    """

    input_norm: str = "none"
    _encoder_frozen: bool = False

    def encoder_modules(self) -> list[nn.Module]:
        """The modules that make up the (pretrainable) encoder."""
        raise NotImplementedError

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """The encoder's parameters (a separate learning rate, freezing)."""
        for m in self.encoder_modules():
            yield from m.parameters()

    @property
    def encoder_frozen(self) -> bool:
        return self._encoder_frozen

    def set_encoder_frozen(self, frozen: bool = True):
        """Freeze (or unfreeze) the encoder; returns the model."""
        self._encoder_frozen = bool(frozen)
        for p in self.encoder_parameters():
            p.requires_grad_(not frozen)
        return self.train(self.training)  # type: ignore[attr-defined]

    def train(self, mode: bool = True):
        super().train(mode)  # type: ignore[misc]
        if mode and self._encoder_frozen:
            for m in self.encoder_modules():
                m.eval()
        return self
