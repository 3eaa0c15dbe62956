"""jaxrecon: learn 3D reconstruction (Reliev3R) and segmentation (Rewis3d) from cheap supervision.

Layers (imports point down only): geometry <- losses <- (fit, evaluate) <- train <- command lines.
"""
__version__ = "0.1.0"
