"""Exceptions raised by pytest-stackcheck.

Every error the plugin raises on purpose derives from ``StackcheckError``::

    StackcheckError
    +-- ProvisionError      a stack could not be brought up or torn down
    +-- ProbeError          a probe could not talk to a service at all
    +-- MissingDependency   an optional package is absent; names the extra

Invalid options and stack profiles are ``pytest.UsageError`` instead, because
pytest prints those as one line without a traceback.
"""


class StackcheckError(Exception):
    """Root of the plugin's own exceptions."""


class ProvisionError(StackcheckError):
    """A provisioner failed to start, attach to or stop a stack."""


class ProbeError(StackcheckError):
    """A probe could not reach or parse what a service returned."""


class MissingDependency(StackcheckError):
    """An optional package is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with "
            f"pip install 'pytest-stackcheck[{extra}]'"
        )
