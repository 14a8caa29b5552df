"""Invoke's entry point (``invoke <task>`` from the repository root): the tasks live in the
package, ``dcforge.cli.tasks``, so they are importable wherever dcforge is installed.

Bare ``nox`` (the main job) makes ``.venv/`` with invoke and dcforge: ``.venv/bin/invoke``,
or ``. .venv/bin/activate`` and then ``invoke``."""

import sys

try:
    from dcforge.cli.tasks import namespace
except ModuleNotFoundError as err:
    if err.name != "dcforge":
        raise
    sys.exit(
        f"invoke: dcforge is not installed for {sys.executable}. Run `nox` once (it makes"
        " .venv/), then `.venv/bin/invoke …`, or `. .venv/bin/activate` and `invoke …`."
    )

__all__ = ["namespace"]
