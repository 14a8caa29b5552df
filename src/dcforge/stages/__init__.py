"""Stages: build, gate, publish, verify, rollback, retention, prune. Each composes tools
around a pure core, and none imports another (tests/unit/test_structure.py)."""
