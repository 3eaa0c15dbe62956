"""Every row of the experiment scripts is a config the trainer accepts: the ablations run for
hours, so a field renamed in a refactor must fail here, not after the first rows have run."""
import importlib
import pathlib
import sys

import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

from jaxrecon.reliev3r.task import check_config as check_reliev3r  # noqa: E402
from jaxrecon.rewis3d.task import check_config as check_rewis3d  # noqa: E402

reliev3r_ablation = importlib.import_module("reliev3r_ablation.run")
rewis3d_ablation = importlib.import_module("rewis3d_ablation.run")
rewis3d_labels = importlib.import_module("rewis3d_labels.run")


@pytest.mark.parametrize("name", list(reliev3r_ablation.VARIANTS))
def test_reliev3r_ablation_rows_are_valid_configs(name):
  overrides, _ = reliev3r_ablation.VARIANTS[name]
  config = reliev3r_ablation.make_config(overrides, steps=300, seed=1, cache="",
                                         num_eval_scenes=16)
  check_reliev3r(config)
  for dotted, value in overrides.items():
    node = config
    for key in dotted.split("."):
      node = node[key]
    assert node == value
  assert config.seed == 1 and config.steps == 300


@pytest.mark.parametrize("module,name", [(m, n) for m in (rewis3d_ablation, rewis3d_labels)
                                         for n in m.VARIANTS])
def test_rewis3d_experiment_rows_are_valid_configs(module, name):
  method, overrides, _ = module.VARIANTS[name]
  if module is rewis3d_labels:
    overrides = {**rewis3d_labels.VALIDATION, **overrides}
  config = rewis3d_ablation.make_config(method, overrides, steps=400, seed=2)
  check_rewis3d(config)
  assert config.methods == method and config.seed == 2
  assert config.data.prepare.label_kind == overrides.get("data.prepare.label_kind", "scribbles")


def test_the_label_study_never_builds_the_demo_held_out_scenes():
  demo = rewis3d_ablation.make_config("ema", {}, steps=1, seed=0)
  study = rewis3d_ablation.make_config("ema", rewis3d_labels.VALIDATION, steps=1, seed=0)
  demo_train = demo.data.prepare.synthetic.num_scenes - demo.data.num_eval_scenes
  assert study.data.prepare.synthetic.seed == demo.data.prepare.synthetic.seed
  # The study's scenes (validation included) are exactly the demo's training scenes.
  assert study.data.prepare.synthetic.num_scenes == demo_train
  assert study.data.num_eval_scenes >= 1
