"""Diagnostics of a fit: which views are registered, their residuals, and the warnings (numpy).

A view counts as registered only when the final model explains it: at least
`FitSettings.min_view_observations` inlier observations with a median error of at most
`FitSettings.max_view_residual_px`. Views outside the largest view-graph component, views that
share no verified pair with anything, and views that fail that test are reported, and their poses
are NaN: never a neighbour's pose presented as an answer.
"""
from __future__ import annotations

import warnings as warnings_lib

import numpy as np

from jaxrecon.fit.settings import FitWarning


def view_statistics(errors, inlier, registered):
  """Per view: inlier observation counts (v,) int and median errors (v,) (NaN if unregistered).

  errors: (t, v) error of every observation (pixels, NaN where unobserved); inlier: (t, v) bool.
  """
  counts = inlier.sum(0)
  median = np.full(inlier.shape[1], np.nan)
  for i in np.nonzero(registered & (counts > 0))[0]:
    median[i] = float(np.median(errors[inlier[:, i], i]))
  return counts.astype(np.int64), median


def _labels(views, names):
  """A printable list of views: [3, 4] or, with names, [3 a.png, 4 b.png]."""
  views = [int(i) for i in views]
  if names is None:
    return str(views)
  return "[" + ", ".join(f"{i} {names[i]}" for i in views) + "]"


def fit_warnings(*, num_views, registered, components, duplicates, stages, errors, observed,
                 inlier, rotation_only, settings, names=None, rejected_focal=None, conflicts=()):
  """The list of warnings a user must see about a fit (module docstring; strings, no newline).

  names: optional v view names (e.g. file names) printed after each view index.
  rejected_focal: the focal scale a `FitSettings.refine_focal` fit reached outside [0.5, 2] (the
    fit was then redone with the given focal), or None.
  conflicts: the `fit.conflicts.Conflict`s of the initialisation (groups split off)."""
  out = []
  lost = np.nonzero(~registered)[0]
  if len(lost):
    out.append(f"{len(lost)} of {num_views} views not registered (poses NaN): views "
               f"{_labels(lost, names)}")
  if len(components) > 1:
    others = [_labels(c, names) for c in components[1:] if len(c) > 1]
    alone = _labels([c[0] for c in components[1:] if len(c) == 1], names)
    parts = []
    if others:
      parts.append(f"{len(others)} other group(s) of views are not linked to it by a verified pair: "
                   f"[{', '.join(others)}]")
    if alone != "[]":
      parts.append(f"views {alone} share no verified pair with any view")
    out.append(f"the view graph has {len(components)} components; registered the largest "
               f"({len(components[0])} views); " + "; ".join(parts))
  for c in conflicts:
    cut = ", ".join(f"{p.i}-{p.j}" for p in c.pairs)
    out.append(f"views {_labels(c.side, names)} were joined to the rest only by the pair(s) "
               f"{cut}, which were cut: placed by them, the two groups find {c.found} of the "
               f"{c.expected:.0f} observations of each other's points that this scene's recall "
               f"predicts (a false match of repeated or symmetric structure)")
  for i, j in duplicates:
    out.append(f"views {_labels([i], names)[1:-1]} and {_labels([j], names)[1:-1]} see the same image points (zero baseline: a duplicated image "
               "or a camera that did not move); both are registered at one position")
  if rotation_only:
    out.append("no view pair has an observable baseline (the camera only turned): rotations are "
               "registered, all centres coincide and the points are directions (depth unknown)")
  for stage in stages:
    if not stage["converged"] and not stage.get("warm_up", False):
      out.append(f"stage '{stage['name']}' did not converge after {stage['iterations']} "
                 f"iterations ({stage['message']})")
  if rejected_focal is not None:
    out.append(f"the focal length is not observable from these views (refining it went to "
               f"{rejected_focal:.3g} times the given one): the given focal length was kept")
  used = observed & registered[None, :]
  if used.any():
    fraction = float(inlier.sum() / used.sum())
    median = float(np.median(errors[inlier])) if inlier.any() else float("nan")
    if fraction < settings.warn_inlier_fraction:
      out.append(f"only {fraction:.0%} of the observations of registered views are inliers "
                 f"(< {settings.warn_inlier_fraction:.0%})")
    if not median <= settings.warn_residual_px:
      out.append(f"median final error {median:.2f} px exceeds {settings.warn_residual_px} px")
  return out


def issue_warnings(messages):
  """Issues each message as a `FitWarning` (stacklevel: the caller of `fit_scene`)."""
  for message in messages:
    warnings_lib.warn(message, FitWarning, stacklevel=3)
