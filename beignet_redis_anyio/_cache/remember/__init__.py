"""remember: single-flight, the cross-process lease, early refresh."""
