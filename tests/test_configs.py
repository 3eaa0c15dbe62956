"""Config files: every variant builds, is locked (a typo fails) and feeds the real constructors."""
import pathlib
import sys

import pytest

from jaxrecon.data.pipeline import PipelineConfig
from jaxrecon.models.config import ModelConfig
from jaxrecon.train.objective import ObjectiveConfig

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from configs import prepare, reliev3r  # noqa: E402


@pytest.mark.parametrize("variant", ["demo", "demo_supervised", "paper"])
def test_reliev3r_variants(variant):
  config = reliev3r.get_config(variant)
  ModelConfig(**config.model.to_dict())
  PipelineConfig(**config.pipeline.to_dict())
  objective = ObjectiveConfig(**config.objective.to_dict())
  assert objective.supervised == (variant == "demo_supervised")
  if variant == "paper":
    assert config.model.embed_dim == 1024 and config.pipeline.num_views == 8
    assert config.pipeline.batch_size == 64 and config.optim.learning_rate == 1e-4
    assert objective.alpha == 1.0 and objective.reg_weight == 0.5
  with pytest.raises(AttributeError):
    config.stpes = 3  # locked: a typo fails


@pytest.mark.parametrize("variant", ["synthetic", "synthetic_fast", "folder"])
def test_prepare_variants(variant):
  config = prepare.get_config(variant)
  assert config.source in ("synthetic", "folder")
  with pytest.raises(AttributeError):
    config.trackr = "sift"


def test_unknown_variants():
  with pytest.raises(ValueError, match="variant"):
    reliev3r.get_config("huge")
  with pytest.raises(ValueError, match="variant"):
    prepare.get_config("cloud")
