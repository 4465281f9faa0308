"""Helpers the tests share: the servers they run against (``targets``), crowds
of callers, factories, observers, versions, and the cross-process worker."""
