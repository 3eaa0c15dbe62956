"""Config validation before anything is built (#10): one UserError naming the key and what was
expected, for the engine's fields and for each task's sections and data."""
import functools
import pathlib
import sys

import pytest

from jaxrecon.errors import UserError
from jaxrecon.reliev3r.task import check_config as check_reliev3r
from jaxrecon.rewis3d.task import check_config as check_rewis3d
from jaxrecon.train import config_check, resume

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from configs import reliev3r, rewis3d  # noqa: E402


def _config(module, **fields):
  """The demo config with fields ("__" for ".") replaced."""
  config = module.get_config()
  with config.unlocked():
    for key, value in fields.items():
      path = key.split("__")
      section = functools.reduce(lambda node, part: node[part], path[:-1], config)
      section[path[-1]] = value
  return config


def test_the_demo_configs_pass():
  check_reliev3r(reliev3r.get_config())
  check_rewis3d(rewis3d.get_config())


@pytest.mark.parametrize("fields, message", [
    (dict(steps=2), r"config.optim.warmup_steps=50: must be in \[0, steps\) and config.steps=2"),
    (dict(steps=0), r"config.steps: expected an integer >= 1, got 0"),
    (dict(log_every=0), r"config.log_every: expected an integer >= 1"),
    (dict(data__cache="/nonexistent"), r"config.data.cache=/nonexistent: folder not found"),
    (dict(init_from="/nonexistent/run"), r"config.init_from=/nonexistent/run: no such run"),
    (dict(data__prepare__source="folder"), r"config.data.prepare.folder.root is not set"),
    (dict(data__prepare__source="folder", data__prepare__folder__root="/nonexistent"),
     r"config.data.prepare.folder.root=/nonexistent: folder not found"),
    (dict(data__prepare__tracker="orb"), r"config.data.prepare.tracker: expected one of"),
    (dict(objective__registration="nope"), r"config.objective: registration: expected one of"),
    (dict(model__num_heads=3), r"config.model: embed_dim \d+ not divisible by num_heads 3"),
    (dict(pipeline__height=0), r"config.pipeline: height: expected >= 1"),
])
def test_reliev3r_config_errors_name_the_key(fields, message):
  with pytest.raises(UserError, match=message):
    check_reliev3r(_config(reliev3r, **fields))


def test_a_cache_with_too_few_scenes_says_how_many_are_needed(tmp_path):
  (tmp_path / "a.npz").write_bytes(b"")
  with pytest.raises(UserError, match=r"1 scene files \(\*.npz\), but config.data."
                                      r"num_eval_scenes=8 are held out, so at least 9"):
    config_check.check_cache(str(tmp_path), 8)


def test_a_folder_without_scenes_is_named(tmp_path):
  (tmp_path / "not_a_scene").mkdir()
  with pytest.raises(UserError, match=r"folder.root=.*: 0 scene folders"):
    check_reliev3r(_config(reliev3r, data__prepare__source="folder",
                           data__prepare__folder__root=str(tmp_path)))


@pytest.mark.parametrize("fields, message", [
    (dict(methods="ema,dino"), r"config.methods: expected a comma-separated subset"),
    (dict(optim3d__warmup_steps=400), r"config.optim3d.warmup_steps=400"),
    (dict(class_names=("a", "b")), r"config.class_names: 2 names, but config.model2d.num_classes"),
    (dict(pipeline__height=50), r"config.pipeline: height: expected a positive multiple of 32"),
    (dict(data__prepare__recon="ffrm"), r"config.data.prepare.ffrm.checkpoint is not set"),
    (dict(data__prepare__recon="mvs", data__prepare__mvs__tracker="orb"),
     r"config.data.prepare.mvs.tracker: expected one of \('xfeat', 'xfeat_lighterglue', 'sift'\)"),
    (dict(data__prepare__recon="mvs", data__prepare__mvs__height=16),
     r"config.data.prepare.mvs.height, mvs.width: expected at least 32 pixels"),
    (dict(data__prepare__label_kind="coarse",
          data__prepare__label_options__coarse={"margin": 3.0, "width": 2}),
     r"config.data.prepare.label_options.coarse: unknown option\(s\) \['width'\]"),
])
def test_rewis3d_config_errors_name_the_key(fields, message):
  with pytest.raises(UserError, match=message):
    check_rewis3d(_config(rewis3d, **fields))


def test_resume_allows_the_safe_fields_and_names_the_others(tmp_path):
  stored = {"steps": 10, "log_every": 5, "model": {"embed_dim": 128, "depth": 2}}
  changes = resume.check_resume(stored, {**stored, "steps": 20, "log_every": 1}, tmp_path)
  assert changes == ["log_every 5 -> 1", "steps 10 -> 20"]
  with pytest.raises(UserError, match=rf"{tmp_path} was trained with model.embed_dim=128 "
                                      r"\(requested 64\); use another workdir"):
    resume.check_resume(stored, {**stored, "model": {"embed_dim": 64, "depth": 2}}, tmp_path)
  with pytest.raises(UserError, match=r"model.width=\(absent\) \(requested 3\)"):
    resume.check_resume(stored, {**stored, "model": {**stored["model"], "width": 3}}, tmp_path)
  assert resume.check_resume(None, stored, tmp_path) == []
  # Evaluating on other data is fine; another model is not.
  assert resume.check_resume(stored, {**stored, "data": {"cache": "x"}}, tmp_path,
                             safe=resume.SAFE_ON_EVAL) == ['data.cache (absent) -> "x"']
