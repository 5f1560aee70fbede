"""Deployment gates for a GPU application stack, as a pytest plugin."""

__version__ = "0.1.0"
