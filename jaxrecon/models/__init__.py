"""Networks (Flax NNX). Models import geometry only: never losses, data or the trainer.

    from jaxrecon.models import ModelConfig, Reliev3R
    model = Reliev3R(ModelConfig.tiny(), rngs=nnx.Rngs(0))
    out = model(images)   # images (b, v, h, w, 3) in [0, 1] -> depth, confidence, world_from_cam
"""
from jaxrecon.models.config import ModelConfig
from jaxrecon.models.reliev3r import Reliev3R, abstract_model, count_params

__all__ = ["ModelConfig", "Reliev3R", "abstract_model", "count_params"]
