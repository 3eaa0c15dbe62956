"""Disjoint sets (union-find) over nodes 0..n-1: the one implementation that merges matches into
tracks (`experts.tracks`) and views into view-graph components and spanning trees (`fit.viewgraph`).
"""
from __future__ import annotations

import numpy as np


class UnionFind:
  """Union-find with path halving and union by size over nodes 0..n-1 (Tarjan & van Leeuwen,
  J. ACM 1984): near-constant time per operation."""

  def __init__(self, n: int):
    self.parent = np.arange(n)
    self.size = np.ones(n, np.int64)

  def find(self, a: int) -> int:
    """The root of a's set."""
    parent = self.parent
    while parent[a] != a:
      parent[a] = parent[parent[a]]
      a = parent[a]
    return a

  def union(self, a: int, b: int) -> bool:
    """Joins the sets of a and b; False when they were one set already."""
    a, b = self.find(a), self.find(b)
    if a == b:
      return False
    if self.size[a] < self.size[b]:
      a, b = b, a
    self.parent[b] = a
    self.size[a] += self.size[b]
    return True
