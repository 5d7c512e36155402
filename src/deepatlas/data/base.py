"""The :class:`ImageSet` container and the name-based loader."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepatlas.errors import DataError, UsageError

__all__ = ["ImageSet"]


@dataclass(frozen=True)
class ImageSet:
    """Images with labels.

    Attributes
    ----------
    images : torch.Tensor
        float32, shape (N, C, H, W), values in [0, 1].
    labels : torch.Tensor
        int64, shape (N,), values in ``range(len(class_names))``.
    class_names : tuple of str
    name : str
        Data set name, e.g. ``"fashion-mnist"``.
    split : str
        ``"train"``, ``"test"`` or ``"all"`` (a data set without splits).
    source : str
        The ``--data`` spec that loads these images again (e.g. ``imagefolder:/abs/dir``);
        "" for the built-in sets, whose ``name`` does.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    name: str
    split: str
    source: str = ""

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"images must have shape (N, C, H, W); got {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(
                f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, limit: int | None = None, *, per_class: int | None = None) -> ImageSet:
        """The first ``limit`` images, or the first ``per_class`` of each class (stratified)."""
        if limit is not None and limit <= 0:
            raise UsageError(f"limit must be positive, got {limit}")
        if per_class is not None:
            if per_class <= 0:
                raise UsageError(f"per_class must be positive, got {per_class}")
            idx = torch.cat(
                [torch.nonzero(self.labels == c).flatten()[:per_class] for c in range(len(self.class_names))]
            ).sort().values
        else:
            idx = torch.arange(min(limit or len(self), len(self)))
        return ImageSet(self.images[idx], self.labels[idx], self.class_names, self.name, self.split, self.source)

