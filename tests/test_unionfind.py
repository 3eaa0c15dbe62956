"""jaxrecon.unionfind against connected components found by breadth-first search."""
import numpy as np

from jaxrecon.unionfind import UnionFind


def _bfs_components(n, edges):
  adjacent = [set() for _ in range(n)]
  for a, b in edges:
    adjacent[a].add(b)
    adjacent[b].add(a)
  label, count = [-1] * n, 0
  for start in range(n):
    if label[start] >= 0:
      continue
    label[start], todo = count, [start]
    while todo:
      for nxt in adjacent[todo.pop()]:
        if label[nxt] < 0:
          label[nxt] = count
          todo.append(nxt)
    count += 1
  return label


def test_sets_equal_breadth_first_components_and_union_reports_merges():
  rng = np.random.default_rng(0)
  for trial in range(20):
    n = int(rng.integers(1, 60))
    edges = [tuple(e) for e in rng.integers(0, n, (int(rng.integers(0, 2 * n)), 2))]
    forest = UnionFind(n)
    merges = sum(forest.union(a, b) for a, b in edges)
    label = _bfs_components(n, edges)
    roots = [forest.find(v) for v in range(n)]
    for a in range(n):
      for b in range(n):
        assert (roots[a] == roots[b]) == (label[a] == label[b])
    assert merges == n - len(set(label))          # each merge joins two sets
    assert forest.size[roots].max() == np.bincount(label).max()
