"""Invoke's entry point (``invoke <task>`` from the repository root): the tasks live in the
package, ``dcforge.tasks``, so they are importable wherever dcforge is installed."""

from dcforge.tasks import namespace

__all__ = ["namespace"]
