"""Processes and I/O: tools, the registry, git, locks and logs. Imports dcforge.core and
itself, never the stages or the CLI."""
