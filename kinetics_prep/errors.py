"""Typed errors. Each also subclasses the builtin a caller would naturally catch.

Always chain: ``raise DecodeError(...) from e`` so the codec's own message survives.
"""

from __future__ import annotations


class KineticsPrepError(Exception):
    """Base of every error kinetics_prep raises on purpose."""


class ConfigError(KineticsPrepError, ValueError):
    """Bad options or arguments, detected before any work starts."""


class MissingDependencyError(KineticsPrepError, ImportError):
    """An optional component is not installed; the message says what to install."""


class InputError(KineticsPrepError, OSError):
    """An input file or directory is missing or unreadable."""


class AnnotationError(KineticsPrepError, ValueError):
    """A malformed annotation file or row (message names file and line)."""


class ProbeError(KineticsPrepError, OSError):
    """A video cannot be opened or has no video stream."""


class DecodeError(KineticsPrepError, OSError):
    """A video opened but its frames cannot be decoded."""


class EncodeError(KineticsPrepError, OSError):
    """Writing an output (video, image) failed."""


class OutputError(KineticsPrepError, OSError):
    """An output location is unsafe or inconsistent (e.g. would overwrite real data)."""


class IncompleteOutputError(KineticsPrepError, RuntimeError):
    """A stage produced fewer files than it must; the output is not marked done."""


class DownloadError(KineticsPrepError, ConnectionError):
    """A remote file could not be fetched (after retries), or came back wrong (size, checksum)."""


class ArchiveError(KineticsPrepError, OSError):
    """An archive is not a tar/tar.gz, is truncated, or cannot be read."""


class FlowServiceError(KineticsPrepError, RuntimeError):
    """A flow service failed or stopped while computing a clip's pairs (message names the clip)."""
