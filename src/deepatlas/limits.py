"""Sizes deepatlas refuses up front, before anything is loaded (torch-free: the CLI checks them
while parsing its flags).

A size past these is a typo or a crafted file, not a model: an input of 1 x 20000 x 20000 is
1.5 GB an image as float32 and ran the machine out of memory before it was refused.
"""

from __future__ import annotations

__all__ = ["MAX_CLASSES", "MAX_INPUT_VALUES", "check_input_shape"]

#: The largest model input: 3 x 4096 x 4096 values an image (192 MB as float32).
MAX_INPUT_VALUES = 3 * 4096 * 4096

#: The most classes a model or a data set may have (ImageNet-21k has 21,841).
MAX_CLASSES = 100_000


def check_input_shape(shape: list[int] | tuple[int, ...], where: str) -> str | None:
    """Why ``shape`` (C, H, W; C may be 0 for "the data's") is refused, or None."""
    values = max(1, int(shape[0])) * int(shape[1]) * int(shape[2])
    if values > MAX_INPUT_VALUES:
        return (f"{where}: an input of {shape[0] or 'C'}x{shape[1]}x{shape[2]} is {values * 4 / 2**30:,.1f} GB an image "
                f"as float32; deepatlas takes at most {MAX_INPUT_VALUES:,} values an image (3x4096x4096)")
    return None
