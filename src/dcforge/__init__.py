"""dcforge: a devcontainer image factory."""

__version__ = "0.1.0"
