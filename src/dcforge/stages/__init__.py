"""Stages: build, gate, publish, prune. Each composes tools around a pure core."""
