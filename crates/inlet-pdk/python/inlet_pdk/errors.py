"""Errors a plugin raises; each becomes the matching ``plugin-error`` of the WIT world.

Raise them anywhere in a plugin's methods (or in a ``read`` generator): the SDK turns them
into the error the host reports, naming the plugin and, for :class:`ConfigError`, the field.
Any other exception becomes :class:`OtherError` with its type and message.
"""

from __future__ import annotations

from wit_world.imports import types as _t


class PluginError(Exception):
    """The base of the errors a plugin raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wit(self) -> _t.PluginError:
        """The WIT value the host receives."""
        return _t.PluginError_Other(self.message)


class ConfigError(PluginError):
    """The configuration is wrong; ``field`` names the config field (``base_url``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def __str__(self) -> str:
        return f"config.{self.field}: {self.message}"

    def to_wit(self) -> _t.PluginError:
        return _t.PluginError_Config(_t.FieldError(field=self.field, message=self.message))


class AuthError(PluginError):
    """The remote system refused the credentials."""

    def to_wit(self) -> _t.PluginError:
        return _t.PluginError_Auth(self.message)


class UnavailableError(PluginError):
    """The remote system is unavailable; the run may be retried."""

    def to_wit(self) -> _t.PluginError:
        return _t.PluginError_Unavailable(self.message)


class DataError(PluginError):
    """The remote data is malformed (or does not fit the stream's schema)."""

    def to_wit(self) -> _t.PluginError:
        return _t.PluginError_Data(self.message)


class StateError(PluginError):
    """The saved state cannot be used (the operator should reset it)."""

    def to_wit(self) -> _t.PluginError:
        return _t.PluginError_State(self.message)


class UnknownStreamError(PluginError):
    """The stream asked for does not exist."""

    def to_wit(self) -> _t.PluginError:
        return _t.PluginError_UnknownStream(self.message)


class DeniedError(PluginError):
    """A host call was refused."""

    def to_wit(self) -> _t.PluginError:
        return _t.PluginError_Denied(self.message)


class OtherError(PluginError):
    """Anything else."""


def from_wit(value: _t.PluginError) -> PluginError:
    """The exception for a ``plugin-error`` the host returned (an HTTP call's failure)."""
    if isinstance(value, _t.PluginError_Config):
        return ConfigError(value.value.field, value.value.message)
    table = {
        _t.PluginError_Auth: AuthError,
        _t.PluginError_Unavailable: UnavailableError,
        _t.PluginError_Data: DataError,
        _t.PluginError_State: StateError,
        _t.PluginError_UnknownStream: UnknownStreamError,
        _t.PluginError_Denied: DeniedError,
    }
    return table.get(type(value), OtherError)(str(getattr(value, "value", value)))


def to_wit(error: BaseException) -> _t.PluginError:
    """The WIT error for any exception a plugin let escape."""
    if isinstance(error, PluginError):
        return error.to_wit()
    text = str(error)
    name = type(error).__name__
    return _t.PluginError_Other(f"{name}: {text}" if text else name)
