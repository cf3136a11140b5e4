"""The model being served, swapped atomically on hot reload and enrolment.

Readers take :meth:`ModelHolder.current` once per call and use that object to the end, so a
call in flight finishes on the model it started with while new calls see the new one. Loading
happens entirely before the swap (verify, start the backend, warm up): a bundle that fails
any step is refused and the old model keeps serving. Writers (reload, enrol) are serialised so
two enrolments cannot lose each other's photos. A replaced model's bundle is closed once no
call holds it any more (reference counting by Python's garbage collector: the bundle closes
its temporary extraction in a finaliser).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from muselens.runtime.recognition.served_model import ServedModel, ServingConfig
from muselens.runtime.safe_text import log_safe

log = logging.getLogger(__name__)


class ModelHolder:
    def __init__(self, model: ServedModel, *, loader: Callable[[Path, ServingConfig], ServedModel] = ServedModel.load):
        self._model = model
        self._write = threading.Lock()
        self._loader = loader
        self.reloads = 0

    def current(self) -> ServedModel:
        return self._model  # one atomic reference read

    def load(self, path: Path | str, variant: str | None = None) -> ServedModel:
        """Load the bundle at ``path`` and swap it in; on any error the old model stays."""
        with self._write:
            config = replace(self._model.config, variant=variant or None)
            new = self._loader(Path(path), config)
            old, self._model = self._model, new
            self.reloads += 1
        log.info("serving bundle %s %s (was %s %s)", new.bundle.name, new.bundle_version,
                 old.bundle.name, old.bundle_version)
        return new

    def enroll(self, instance_id: str, title: str, metadata: Mapping[str, str],
               images: Sequence[np.ndarray]) -> ServedModel:
        with self._write:
            new = self._model.with_enrolled(instance_id, title, metadata, images)
            self._model = new
        log.info("enrolled %d photo(s) of %s", len(images), log_safe(instance_id))
        return new
