"""Errors the engine raises for bad input: each message names what was wrong and what to do.

Pages and the CLI catch `CnnError` and show its message; anything else is a bug.
"""


class CnnError(Exception):
    """Base class: a problem with the user's input, not with the code."""


class SpecError(CnnError):
    """An impossible or malformed model spec. `layer` is the 1-based layer position, if any."""

    def __init__(self, message: str, layer: int | None = None):
        super().__init__(message)
        self.layer = layer
        self.partial: tuple = ()  # LayerInfo of the layers before the failing one (set by validate)


class DatasetError(CnnError):
    """A dataset that cannot be found, downloaded or read."""


class RegistryError(CnnError):
    """A saved model that cannot be found, read, written or accepted."""


class ImageError(CnnError):
    """An image file or array that cannot be turned into a model input."""


class TrainingError(CnnError):
    """Training that cannot start or cannot go on (e.g. data that does not fit the model)."""


class ExportError(CnnError):
    """An export that cannot be written or checked here (e.g. a format whose converter is not installed)."""


class EmptyImageError(ImageError):
    """An image with nothing drawn on it: there is nothing to predict."""

    blank = True  # False: the picture has light and shade but no ink (the message says which)
    steps = ()  # the preprocessing steps so far, for the inspector


class CalibrationError(CnnError):
    """A calibration that cannot be fitted, read or applied to this model."""
