"""A seeded synthetic museum: procedural artworks photographed the way visitors photograph them.

``make_museum`` writes a dataset in the museum format (see :mod:`muselens.core.data`) so
that training, evaluation and tests need no downloads. Every image is a pure function of the
seed and its own (instance, split, index) key, so the files are byte-identical whatever the
number of worker processes.
"""

from __future__ import annotations

from muselens.core.synthetic.artworks import KINDS
from muselens.core.synthetic.museum import make_museum

__all__ = ["KINDS", "make_museum"]
