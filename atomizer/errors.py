"""One error hierarchy for the whole toolkit.

Every error is a sentence that says what was wrong, where, and how to fix it. Only the CLI turns
these into printed messages and exit codes; library code raises them and never prints or exits.
"""

from __future__ import annotations


class AtomizerError(Exception):
    """Base class of every error raised on purpose by atomizer."""


class SpecError(AtomizerError):
    """A sensor spec (YAML file or dict) is malformed or physically implausible.

    ``problems`` holds one human-readable line per problem found, so that a validator can report
    all of them at once; ``str(error)`` joins them.
    """

    def __init__(self, problems: list[str] | str, *, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(self.problems))


class UnknownSensorError(AtomizerError, KeyError):
    """No sensor spec with this id or alias is registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateSensorError(AtomizerError):
    """Two sensor specs claim the same id or alias."""


class PluginError(AtomizerError):
    """A plugin misbehaved (failed to import, registered something invalid)."""


class ReaderError(AtomizerError):
    """An image source could not be turned into atoms (missing file, corrupt raster, bad item...)."""


class BandMatchError(ReaderError):
    """Assets or bands of an item could not be matched to the bands of a sensor spec."""


class WindowError(ReaderError):
    """A requested spatial window lies outside the scene or is empty."""


class AtomsFormatError(AtomizerError):
    """A ``.atoms`` file is missing, truncated, corrupt, or of an unsupported format version."""


class EncoderError(AtomizerError):
    """An encoder configuration is invalid (unknown encoder name, bad parameter)."""


class ConfigError(AtomizerError):
    """An experiment / training / encoding configuration file is invalid."""


class CheckpointError(AtomizerError):
    """A checkpoint is missing, not a checkpoint, or from an incompatible version."""


class SimulationError(AtomizerError):
    """A sensor cannot be simulated from the given source (out of spectral range, finer GSD...)."""


class DatasetError(AtomizerError):
    """A dataset is missing or laid out in a way the loader does not understand."""


class ModalityError(AtomizerError):
    """A modality (sensor + bands + GSD + size) cannot be used by a model or dataset."""


class OutputError(AtomizerError):
    """An output path cannot be written."""


class DocumentError(AtomizerError):
    """A document read from outside (JSON, YAML) cannot be read or parsed, or is not the expected shape."""


class LimitError(AtomizerError):
    """An input asks for more work or memory than a documented limit allows (see ``atomizer.limits``)."""
