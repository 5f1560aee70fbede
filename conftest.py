"""Register the plugin for runs from a source checkout that was not installed."""

from importlib.metadata import entry_points

if not any(ep.name == "stackcheck" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["pytest_stackcheck.plugin"]
