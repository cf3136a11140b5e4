"""The one exception of the bundle layer."""

from __future__ import annotations


class BundleError(ValueError):
    """A bundle that cannot be written, read or trusted; the message names the file and the problem."""
