"""Datasets shipped with skattn."""

from ._r8 import load_r8

__all__ = ["load_r8"]
