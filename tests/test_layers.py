"""The package's import graph: every module imports, and imports only point down the layers.

    commands (main, prepare, reconstruct, reconstruct_fit, segment; cli: how they fail)
    methods (reliev3r, rewis3d)           import the core and the engine
    train                                 the engine: imports the core only
    core (geometry, losses, optim, models, io, experts, data, evaluate, fit, mvs, export)

Within the core: geometry and io import nothing of the package, losses and models only geometry,
experts no data / models / losses. `errors` (UserError) imports nothing and every layer may raise
it. No package imports another's `_private` module; no cycles.
"""
import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "jaxrecon"
COMMANDS = {"main", "prepare", "reconstruct", "reconstruct_fit", "segment", "cli"}
BASE = "errors"  # importable from every layer, imports nothing
METHODS = {"reliev3r", "rewis3d"}
ENGINE = {"train"}
# Rewis3d's "ffrm" reconstruction source runs a trained Reliev3R model: the papers' one pipeline.
METHOD_IMPORTS = {"rewis3d": {"reliev3r"}}
CORE_ONLY = {"geometry": set(), "io": set(), "optim": set(), "losses": {"geometry"},
             "models": {"geometry"}}
CORE_NEVER = {"experts": {"data", "models", "losses"}}


def _modules():
  mods = {}
  for path in ROOT.rglob("*.py"):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    mods[name] = path
  return mods


def _package(module: str) -> str:
  return module.split(".")[1] if "." in module else module


def _imports(module: str, path: pathlib.Path, mods) -> set[str]:
  """Package modules that `module` imports (absolute and relative imports, names included)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
      targets = [base] + [f"{base}.{a.name}" for a in node.names]
    else:
      continue
    # The root package only holds the version; `from jaxrecon import x` counts as importing x.
    found.update(t for t in targets if t in mods and t != "jaxrecon")
  return found


def _edges():
  mods = _modules()
  edges = {}
  for module, path in mods.items():
    for target in _imports(module, path, mods):
      edges.setdefault((_package(module), _package(target)), []).append((module, target))
  return {k: v for k, v in edges.items() if k[0] != k[1]}


def test_every_module_imports():
  for module in sorted(_modules()):
    if _package(module) in COMMANDS:
      continue  # commands define absl flags; each is imported by its own tests
    importlib.import_module(module)


def test_imports_point_down_the_layers():
  core = {_package(m) for m in _modules()} - COMMANDS - METHODS - ENGINE - {"jaxrecon"}
  bad = []
  for (a, b), where in _edges().items():
    allowed = (a in COMMANDS or a == "jaxrecon" or b == BASE
               or (a in METHODS and (b in core or b in ENGINE or b in METHOD_IMPORTS.get(a, ())))
               or (a in ENGINE and b in core)
               or (a in core and b in core and b in CORE_ONLY.get(a, {b})
                   and b not in CORE_NEVER.get(a, ())))
    if not allowed:
      bad.append(f"{a} -> {b} ({where[0][0]} imports {where[0][1]})")
  assert not bad, "\n".join(sorted(bad))
  assert not [a for a, b in _edges() if a == BASE], f"{BASE} must import nothing of the package"


def test_no_private_module_of_another_package():
  bad = [f"{m} -> {t}" for (a, b), where in _edges().items() for m, t in where
         if any(p.startswith("_") and not p.startswith("__") for p in t.split(".")[2:])]
  assert not bad, bad


def test_no_package_cycle():
  graph = {}
  for a, b in _edges():
    graph.setdefault(a, set()).add(b)

  def reaches(start, goal, seen):
    for nxt in graph.get(start, ()):
      if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
        return True
    return False

  cycles = sorted(a for a in graph if reaches(a, a, set()))
  assert not cycles, f"packages on an import cycle: {cycles}"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_core_and_engine_know_no_method(name):
  users = sorted({a for (a, b) in _edges() if b == name and a not in COMMANDS | METHODS})
  assert not users, f"{name} imported by {users}"
