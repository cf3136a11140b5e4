"""The descriptor contract of an exported model: one frozen, typed record, written once and
carried everywhere.

Export builds a :class:`DescriptorContract` from the trained model and writes it into every ONNX
file's metadata (key :data:`METADATA_KEY`, :meth:`DescriptorContract.to_json`), into TensorRT
engines' sidecars and into the bundle manifest's ``descriptor`` (:meth:`DescriptorContract.to_dict`).
The runtime reads it back and validates it once, when a bundle or model is loaded
(:meth:`DescriptorContract.from_dict`, :meth:`DescriptorContract.from_metadata`), then uses its
fields: how to prepare pixels (short side, aspect cap, the backbone's
:class:`~muselens.core.preprocess.PreprocessContract`), what comes out (``dim``, ``k``, the output
names) and how descriptors compare (L2-normalised, dot product). Nothing is hard-coded elsewhere.

On disk the contract is the JSON object every muselens export has written: the fields below, plus
``interpolation``, ``antialias`` and ``stride`` repeated from ``preprocess`` at the top level for
readers that do not parse it (they must agree with it). Keys an exporter adds beyond these are kept
in :attr:`DescriptorContract.extra` and written back unchanged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from muselens.core import checks
from muselens.core.json_values import freeze, thaw
from muselens.core.preprocess import PreprocessContract

METADATA_KEY = "muselens.descriptor"  # the ONNX metadata key (and the sidecar's) holding the contract
VARIANT_KEY = "muselens.variant"  # the ONNX metadata key naming the precision variant
INPUT_NAME = "image"
INPUT_LAYOUT = "NHWC uint8 RGB"
# The graph's outputs, in order (see muselens.export.inference_graph for what each one is).
OUTPUT_NAMES = ("descriptor", "activation", "descriptor_map", "locations", "class_logits")
NORMALISATION = "l2"  # galleries hold unit vectors
SIMILARITY = "dot"
# Repeated at the top level of the JSON from ``preprocess``.
MIRRORED = ("interpolation", "antialias", "stride")
REQUIRED = ("dim", "k", "short_side", "max_aspect", "preprocess", "input", "input_name", "outputs",
            "normalisation", "similarity", *MIRRORED)


def feature_shape(height: int, width: int, stride: int) -> tuple[int, int]:
    """``(h, w)`` of the last feature map for an input ``height x width`` (``ceil`` per side)."""
    return math.ceil(height / stride), math.ceil(width / stride)


def feature_cells(height: int, width: int, stride: int) -> int:
    """Cells of the last feature map for an input ``height x width``."""
    h, w = feature_shape(height, width, stride)
    return h * w


@dataclass(frozen=True)
class DescriptorContract:
    """What an exported model takes and gives; validated on construction.

    ``dim``: descriptor size D. ``k``: regions pooled per image (an input needs at least ``k``
    feature cells). ``short_side`` and ``max_aspect``: the recognition size (short side, long side
    capped at ``short_side * max_aspect``). ``preprocess``: the backbone's resampling and stride
    (normalisation happens inside the graph). ``input``/``input_name``/``outputs``: the graph's
    interface. ``extra``: any further keys an exporter wrote (JSON values, read-only).
    """

    dim: int
    k: int
    short_side: int
    max_aspect: float
    preprocess: PreprocessContract
    input: str = INPUT_LAYOUT
    input_name: str = INPUT_NAME
    outputs: tuple[str, ...] = OUTPUT_NAMES
    normalisation: str = NORMALISATION
    similarity: str = SIMILARITY
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    __hash__ = None  # a mapping inside; equality compares content

    def __post_init__(self) -> None:
        for name in ("dim", "k", "short_side"):
            self._set(name, checks.integer(getattr(self, name), f"descriptor.{name}", low=1))
        self._set("max_aspect", checks.number(self.max_aspect, "descriptor.max_aspect", low=1.0))
        if not isinstance(self.preprocess, PreprocessContract):
            raise checks.WrongTypeError(f"descriptor.preprocess must be a PreprocessContract, "
                                        f"got {type(self.preprocess).__name__}")
        if not isinstance(self.input, str):
            raise checks.WrongTypeError(f"descriptor.input must be a layout string ({INPUT_LAYOUT!r}), "
                                        f"got {self.input!r}")
        if self.input != INPUT_LAYOUT:
            raise ValueError(f"descriptor.input must be {INPUT_LAYOUT!r} (what the runtime feeds the graph), "
                             f"got {self.input!r}")
        checks.text(self.input_name, "descriptor.input_name")
        self._set("outputs", self._check_outputs(self.outputs))
        if self.normalisation != NORMALISATION:
            raise ValueError(f"descriptor.normalisation must be {NORMALISATION!r} (galleries hold unit vectors), "
                             f"got {self.normalisation!r}")
        if self.similarity != SIMILARITY:
            raise ValueError(f"descriptor.similarity must be {SIMILARITY!r}, got {self.similarity!r}")
        extra = checks.mapping(self.extra, "descriptor extra keys")
        known = [key for key in extra if key in REQUIRED]
        if known:
            raise ValueError(f"descriptor extra keys must not repeat its fields: {known}")
        self._set("extra", MappingProxyType({key: freeze(value, f"descriptor.{key}") for key, value in extra.items()}))

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen dataclass in __post_init__

    @staticmethod
    def _check_outputs(outputs: object) -> tuple[str, ...]:
        if isinstance(outputs, str) or not isinstance(outputs, (list, tuple)) or not outputs:
            raise checks.WrongTypeError(f"descriptor.outputs must be a non-empty list of output names, "
                                        f"got {outputs!r}")
        for i, out in enumerate(outputs):
            checks.text(out, f"descriptor.outputs[{i}]")
        if len(set(outputs)) != len(outputs):
            raise ValueError(f"descriptor.outputs has duplicate names: {list(outputs)}")
        return tuple(outputs)

    @property
    def interpolation(self) -> str:
        return self.preprocess.interpolation

    @property
    def antialias(self) -> bool:
        return self.preprocess.antialias

    @property
    def stride(self) -> int:
        return self.preprocess.stride

    def feature_shape(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` of the feature map this model makes of a ``height x width`` input."""
        return feature_shape(height, width, self.stride)

    def feature_cells(self, height: int, width: int) -> int:
        """Feature cells this model makes of a ``height x width`` input (at least ``k`` are needed)."""
        return feature_cells(height, width, self.stride)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written into the manifest (and, as :meth:`to_json`, the ONNX metadata)."""
        return {
            "dim": self.dim, "k": self.k, "input": self.input, "input_name": self.input_name,
            "outputs": list(self.outputs), "short_side": self.short_side, "max_aspect": self.max_aspect,
            "interpolation": self.interpolation, "antialias": self.antialias, "stride": self.stride,
            "normalisation": self.normalisation, "similarity": self.similarity,
            "preprocess": self.preprocess.to_dict(), **thaw(self.extra),
        }

    def to_json(self) -> str:
        """The ONNX metadata value: :meth:`to_dict` as JSON with sorted keys."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: object, source: str = "descriptor") -> DescriptorContract:
        """Read and validate the JSON object :meth:`to_dict` wrote; ``source`` names it in errors."""
        d = checks.mapping(data, source)
        missing = [key for key in REQUIRED if key not in d]
        if missing:
            raise ValueError(f"{source} lacks required keys {missing} (required: {list(REQUIRED)})")
        checks.mapping(d["preprocess"], f"{source}.preprocess")
        try:
            preprocess = PreprocessContract.from_dict(dict(d["preprocess"]))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{source}.preprocess: {exc}") from exc
        contract = cls(dim=d["dim"], k=d["k"], short_side=d["short_side"], max_aspect=d["max_aspect"],
                       preprocess=preprocess, input=d["input"], input_name=d["input_name"], outputs=d["outputs"],
                       normalisation=d["normalisation"], similarity=d["similarity"],
                       extra={key: value for key, value in d.items() if key not in REQUIRED})
        for key in MIRRORED:
            given, own = d[key], getattr(preprocess, key)
            if given != own or type(given) is not type(own):
                raise ValueError(f"{source}.{key} is {given!r} but {source}.preprocess.{key} is {own!r}: "
                                 "they must agree")
        return contract

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str | Path = "model") -> DescriptorContract:
        """The contract stored in an ONNX file's custom metadata (e.g. ORT's ``custom_metadata_map``)
        or an engine's sidecar."""
        if METADATA_KEY not in metadata:
            raise ValueError(f"{source} carries no muselens descriptor contract (metadata key "
                             f"{METADATA_KEY!r} is missing): export it with muselens.export")
        try:
            data = json.loads(metadata[METADATA_KEY])
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: metadata {METADATA_KEY!r} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{source}: metadata {METADATA_KEY!r} must hold a JSON object")
        return cls.from_dict(data, f"{source}: descriptor contract")
