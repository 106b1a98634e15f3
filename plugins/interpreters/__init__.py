"""Built-in interpreters: CAM, Grad-CAM, Grad-CAM++, hide-and-seek and excitation backprop."""

from __future__ import annotations

from pyseg_plugins.interpreters.cam import cam, gradcam, gradcam_plus_plus
from pyseg_plugins.interpreters.excitation_backprop import excitation_backprop
from pyseg_plugins.interpreters.hide_and_seek import hide_and_seek

from pyseg.hookspecs import hookimpl
from pyseg.registry import Interpreter


@hookimpl
def pyseg_interpreters() -> list[Interpreter]:
    return [
        Interpreter("cam", cam, summary="class activation map (GAP + linear classifiers)",
                    tasks="classification", takes_layer=True),
        Interpreter("gradcam", gradcam, takes_layer=True,
                    summary="Grad-CAM: gradient-weighted class activation map"),
        Interpreter("gradcam++", gradcam_plus_plus, takes_layer=True,
                    summary="Grad-CAM++: pixel-weighted Grad-CAM"),
        Interpreter("hide-and-seek", hide_and_seek,
                    summary="score drop when random grids of patches are hidden"),
        Interpreter("excitation-backprop", excitation_backprop, takes_layer=True,
                    summary="excitation backprop: marginal winning probability "
                            "(contrastive=True: c-MWP)"),
    ]
