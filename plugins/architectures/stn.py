"""A spatial transformer in front of a built-in classifier (Jaderberg et al. 2015)."""

from __future__ import annotations

from typing import Any

from pyseg_plugins.architectures.classifiers import MiniXception, SmallConvNet
from torch import Tensor, nn

from pyseg.nn.spatial_transformer import SpatialTransformer

CLASSIFIERS: dict[str, type[nn.Module]] = {
    "mini-xception": MiniXception,
    "small-convnet": SmallConvNet,
}


class STNClassifier(nn.Module):
    """``classifier(transformer(x))``: the transformer learns, from the classification
    loss alone, to resample each image into the pose the classifier handles best.

    Args:
        num_classes: outputs of the classifier (1 = binary, logit).
        in_channels: input channels.
        classifier: ``"mini-xception"`` (default; any input size) or ``"small-convnet"``.
        **kwargs: passed to the classifier (e.g. ``input_size=`` for ``small-convnet``).

    Raises:
        ValueError: an unknown ``classifier``.

    Example::

        >>> from pyseg_plugins.architectures.stn import STNClassifier
        >>> net = STNClassifier(num_classes=2).eval()
        >>> net(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 2])
    """

    def __init__(self, num_classes: int = 1, in_channels: int = 3,
                 classifier: str = "mini-xception", **kwargs: Any) -> None:
        super().__init__()
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {sorted(CLASSIFIERS)}, got {classifier!r}")
        self.transformer = SpatialTransformer(in_channels)
        self.classifier = CLASSIFIERS[classifier](num_classes=num_classes,
                                                  in_channels=in_channels, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.transformer(x))
