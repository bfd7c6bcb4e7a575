"""The one error of a matrix run that stops it or fails a cell, with a message for people."""

from __future__ import annotations


class MatrixRunError(RuntimeError):
    pass
