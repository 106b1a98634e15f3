"""Built-in interpreters: CAM, Grad-CAM, Grad-CAM++, Layer-CAM, HiResCAM, XGrad-CAM, Eigen-CAM,
Score-CAM, Ablation-CAM, RISE, ACoL, hide-and-seek and excitation backprop.

ACoL needs a model of its own, so this plugin also registers the architecture ``acol`` (an
ACoL head on a registered classifier's features; ``pyseg train --arch NAME --acol``)."""

from __future__ import annotations

from pyseg_plugins.interpreters.cam import cam, gradcam, gradcam_plus_plus
from pyseg_plugins.interpreters.cam_family import (
    ablation_cam,
    eigen_cam,
    hires_cam,
    layer_cam,
    score_cam,
    xgrad_cam,
)
from pyseg_plugins.interpreters.excitation_backprop import excitation_backprop
from pyseg_plugins.interpreters.hide_and_seek import hide_and_seek
from pyseg_plugins.interpreters.rise import rise

from pyseg.hookspecs import hookimpl
from pyseg.interpret.acol import acol_classifier, acol_maps
from pyseg.registry import Architecture, Interpreter


@hookimpl
def pyseg_architectures() -> list[Architecture]:
    return [
        Architecture("acol", acol_classifier, tasks="classification",
                     summary="ACoL: two complementary classifier branches on a registered "
                             "classifier's features (Zhang et al. 2018; pyseg train --acol)"),
    ]


@hookimpl
def pyseg_interpreters() -> list[Interpreter]:
    return [
        Interpreter("cam", cam, summary="class activation map (GAP + linear classifiers)",
                    tasks="classification", takes_layer=True),
        Interpreter("gradcam", gradcam, takes_layer=True,
                    summary="Grad-CAM: gradient-weighted class activation map"),
        Interpreter("gradcam++", gradcam_plus_plus, takes_layer=True,
                    summary="Grad-CAM++: pixel-weighted Grad-CAM"),
        Interpreter("layercam", layer_cam, takes_layer=True,
                    summary="Layer-CAM: activations weighted by their positive gradients"),
        Interpreter("hirescam", hires_cam, takes_layer=True,
                    summary="HiResCAM: gradient times activation, summed over channels"),
        Interpreter("xgradcam", xgrad_cam, takes_layer=True,
                    summary="XGrad-CAM: activation-weighted average of the gradients"),
        Interpreter("eigencam", eigen_cam, takes_layer=True,
                    summary="Eigen-CAM: first principal component of the features "
                            "(class-agnostic)"),
        Interpreter("scorecam", score_cam, takes_layer=True,
                    summary="Score-CAM: scores of the input masked by each activation map"),
        Interpreter("ablationcam", ablation_cam, takes_layer=True,
                    summary="Ablation-CAM: score drop when each channel is zeroed"),
        Interpreter("rise", rise,
                    summary="RISE: scores of the input under random smooth masks"),
        Interpreter("acol", acol_maps, tasks="classification",
                    summary="ACoL: fused maps of an ACoL model's two complementary branches"),
        Interpreter("hide-and-seek", hide_and_seek,
                    summary="score drop when random grids of patches are hidden"),
        Interpreter("excitation-backprop", excitation_backprop, takes_layer=True,
                    summary="excitation backprop: marginal winning probability "
                            "(contrastive=True: c-MWP)"),
    ]
