"""newsletter: write, check, preview and send a campaigns newsletter."""

__version__ = "0.1.0"
