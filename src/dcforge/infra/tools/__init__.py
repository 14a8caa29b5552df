"""Thin wrappers, one per external tool. Each takes a :class:`~dcforge.infra.runner.Runner`."""
