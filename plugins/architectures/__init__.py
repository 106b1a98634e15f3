"""Built-in architectures.

Every model here builds its upsampling and unpooling from pyseg's operators
(``pyseg.nn.ConvTranspose2d``, ``pyseg.nn.MaxUnpool2d``, ``pyseg.nn.Upsample``,
``pyseg.nn.DeformConv2dPack`` / ``ModulatedDeformConv2dPack``), never from torch's.
"""

from __future__ import annotations

from pyseg_plugins.architectures.classifiers import MiniXception, SmallConvNet
from pyseg_plugins.architectures.deconvnet import DeconvNet
from pyseg_plugins.architectures.fcn import (
    FCN8s,
    FCN16s,
    FCN32s,
    TimmFCN,
    create_fcn8s,
    create_fcn16s,
    create_fcn32s,
)
from pyseg_plugins.architectures.pets import PetsEncoderDecoder
from pyseg_plugins.architectures.segnet import SegNet
from pyseg_plugins.architectures.stn import STNClassifier
from pyseg_plugins.architectures.unet import TimmUNet, UNet, create_unet

import pyseg
from pyseg.registry import Architecture

__all__ = [
    "DeconvNet",
    "FCN8s",
    "FCN16s",
    "FCN32s",
    "MiniXception",
    "PetsEncoderDecoder",
    "STNClassifier",
    "SegNet",
    "SmallConvNet",
    "TimmFCN",
    "TimmUNet",
    "UNet",
]


@pyseg.hookimpl
def pyseg_architectures() -> list[Architecture]:
    return [
        Architecture(
            "pets-encdec", PetsEncoderDecoder,
            summary="Keras-style conv/transposed-conv encoder-decoder for Oxford Pets "
                    "(Chollet, Deep Learning with Python, ch. 9)",
        ),
        Architecture("fcn32s", create_fcn32s,
                     summary="FCN-32s: VGG16 fully convolutional net, 32x upsampling "
                             "(Long et al. 2015)"),
        Architecture("fcn16s", create_fcn16s,
                     summary="FCN-16s: FCN-32s plus a pool4 skip (Long et al. 2015)"),
        Architecture("fcn8s", create_fcn8s,
                     summary="FCN-8s: FCN-16s plus a pool3 skip (Long et al. 2015)"),
        Architecture("deconvnet", DeconvNet,
                     summary="DeconvNet: VGG16 encoder and mirrored unpool/deconv network "
                             "(Noh et al. 2015)"),
        Architecture("segnet", SegNet,
                     summary="SegNet: VGG16 encoder, decoder unpools with the encoder's "
                             "indices (Badrinarayanan et al. 2017)"),
        Architecture("unet", create_unet,
                     summary="U-Net with skip concatenation; transposed or bilinear "
                             "upsampling, optional deformable convs, or a timm encoder "
                             "(Ronneberger et al. 2015)"),
        Architecture("small-convnet", SmallConvNet, tasks="classification", input_size=180,
                     summary="the small cats-vs-dogs convnet (Deep Learning with Python, "
                             "ch. 8)"),
        Architecture("mini-xception", MiniXception, tasks="classification",
                     summary="Xception-like classifier: separable convs, batch norm, "
                             "residuals (Deep Learning with Python, ch. 9)"),
        Architecture("stn", STNClassifier, tasks="classification",
                     summary="spatial transformer (affine localization net, grid_sample) in "
                             "front of mini-xception or small-convnet (Jaderberg et al. 2015)"),
    ]
