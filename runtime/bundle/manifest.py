"""``manifest.json``: what a bundle holds, how it was made and how to use it.

One frozen :class:`Manifest` describes a bundle; :meth:`Manifest.to_json` writes it with a
self-checksum (``manifest_sha256``, the SHA-256 of the canonical JSON of every other field,
see :func:`muselens.runtime.bundle._json.canonical`) so an edited or corrupted manifest is
caught, and :meth:`Manifest.from_json` checks the format, its version and that checksum before
anything else. Every other file of the bundle is checksummed *in* the manifest.

The descriptor contract (``descriptor``) is read into a typed
:class:`~muselens.core.descriptor_contract.DescriptorContract`, validated here, once, when the
manifest is loaded; keys an exporter added beyond its fields are kept and written back.

Models are ONNX files, ``models/<variant>.onnx``, except TensorRT engines: a variant whose
name ends in :data:`ENGINE_SUFFIX` (``fp16-trt``, ``int8-trt``) is a serialised engine,
``models/<variant>.plan``, built for one GPU architecture and TensorRT version (the export
records both in ``training["tensorrt"]``). The variant name alone decides the file, so the
writer, the verifier and the loader need no other field, manifests without engines are
unchanged and every bundle written before engines existed loads as before.

``format_version`` 2 lets the threshold say how it was set (``method`` and ``sources``, see
:class:`Threshold`): a muselens that reads only version 1 would refuse those keys, so it is told
the version instead. Version 1 manifests (four threshold keys, possibly the uncalibrated -1.0 of
a museum without distractors) still load, and write back byte for byte.

``format_version`` 3 adds the optional ``local_features``: the
:class:`~muselens.runtime.verification.FeatureConfig` the references' local features were
extracted with, stored in :data:`LOCAL_FEATURES_FILE` (plain arrays, one block per gallery row)
so the runtime can verify a match geometrically. The key is absent when the bundle has none,
so older manifests write back unchanged.

``format_version`` 4 lets a bundle with local features also carry :data:`VOTE_INDEX_FILE`: the
index the local-feature vote searches, built once at export (faiss's serialisation), because
building it takes minutes for a museum of a few thousand references and it would otherwise be
built at every load. A muselens that reads only version 3 would refuse the unknown file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from muselens.core import checks
from muselens.core.descriptor_contract import DescriptorContract
from muselens.core.json_values import freeze, thaw
from muselens.runtime.bundle import _json
from muselens.runtime.bundle.checksum import is_sha256, sha256_bytes
from muselens.core.metrics.threshold import DISTRACTORS, METHOD, SourceThreshold, ThresholdCalibration
from muselens.runtime.verification.features import FeatureConfig

FORMAT = "muselens-bundle"
FORMAT_VERSION = 4
SUPPORTED_FORMAT_VERSIONS = (1, 2, 3, 4)
THRESHOLD_SOURCES_VERSION = 2  # the first format_version whose threshold may carry method and sources
LOCAL_FEATURES_VERSION = 3  # the first format_version that may carry local features
VOTE_INDEX_VERSION = 4  # the first format_version that may carry the built vote index
MANIFEST_FILE = "manifest.json"
GALLERY_FILE = "gallery.npz"
LABELS_FILE = "labels.json"
DATA_FILES = (GALLERY_FILE, LABELS_FILE)
# Optional: every reference's local features, for geometric verification (LocalFeatureStore).
LOCAL_FEATURES_FILE = "local_features.npz"
# Optional, with the local features: their vote index, built at export (LocalVoter.to_bytes).
VOTE_INDEX_FILE = "local_vote_index.faiss"
OPTIONAL_FIELDS = ("local_features", "verification")
# Optional: the photo of gallery row N, which lets the service explain a match on the reference's side.
REFERENCE_PHOTO = re.compile(r"references/(\d{5})\.jpg")


def reference_file(row: int) -> str:
    """Where the photo of gallery row ``row`` lives inside a bundle."""
    return f"references/{checks.integer(row, 'reference photo row', low=0, high=99_999):05d}.jpg"
CHECKSUM_KEY = "manifest_sha256"

REQUIRED_METRICS = ("mp_at_1", "map")
_VARIANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_MAX_TEXT = 256


ENGINE_SUFFIX = "-trt"
MODEL_FORMATS = {".onnx": "onnx", ".plan": "tensorrt"}


def is_engine_variant(variant: str) -> bool:
    """Whether ``variant`` names a TensorRT engine (``<precision>-trt``) rather than an ONNX file."""
    return variant.endswith(ENGINE_SUFFIX) and len(variant) > len(ENGINE_SUFFIX)


def engine_variant(precision: str) -> str:
    """The variant name of the TensorRT engine built at ``precision`` (``fp16`` -> ``fp16-trt``)."""
    return f"{precision}{ENGINE_SUFFIX}"


def model_file(variant: str) -> str:
    """The one place a variant's model lives inside a bundle: ``models/<variant>.onnx``, or
    ``models/<variant>.plan`` for a TensorRT engine variant (see :func:`is_engine_variant`)."""
    return f"models/{variant}.plan" if is_engine_variant(variant) else f"models/{variant}.onnx"


def utc_now() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ`` (the ``created`` spelling)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: object, name: str) -> str:
    checks.text(value, name)
    if len(value) > _MAX_TEXT or not value.isprintable():
        raise ValueError(f"{name} must be printable text of at most {_MAX_TEXT} characters, "
                         f"got {value!r}")
    return value


def _exact_keys(data: Mapping[str, Any], expected: set[str], name: str) -> None:
    unknown, missing = set(data) - expected, expected - set(data)
    if unknown:
        raise ValueError(f"{name} has unknown keys {sorted(unknown)}")
    if missing:
        raise ValueError(f"{name} lacks keys {sorted(missing)}")


def _check_created(value: object) -> str:
    text = _text(value, "created")
    try:
        stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError as exc:
        raise ValueError(f"created must be an ISO 8601 UTC time, got {text!r}") from exc
    if stamp.utcoffset() is None or stamp.utcoffset().total_seconds() != 0:
        raise ValueError(f"created must be in UTC (suffix Z or +00:00), got {text!r}")
    return text


def check_format(data: Mapping[str, Any]) -> None:
    """Refuse anything that is not a supported muselens bundle manifest, naming what was found."""
    found = data.get("format")
    if found != FORMAT:
        raise ValueError(f"not a muselens bundle manifest: format is {found!r}, expected {FORMAT!r}")
    version = checks.integer(data.get("format_version"), "format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ValueError(f"bundle format_version {version} is not supported: this muselens reads "
                         f"format_version {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}")


@dataclass(frozen=True)
class ModelEntry:
    """One exported model of a bundle: ``file`` is :func:`model_file` of its variant."""

    file: str
    sha256: str
    bytes: int
    precision: str

    def __post_init__(self) -> None:
        _text(self.file, "model file")
        if not is_sha256(self.sha256):
            raise ValueError(f"model sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        object.__setattr__(self, "bytes", checks.integer(self.bytes, "model bytes", low=1))
        _text(self.precision, "model precision")

    @property
    def format(self) -> str:
        """``"onnx"`` or ``"tensorrt"``: which backends can run the file (from its extension)."""
        suffix = self.file[self.file.rfind("."):] if "." in self.file else ""
        if suffix not in MODEL_FORMATS:
            raise ValueError(f"model file {self.file!r} has no known format {sorted(MODEL_FORMATS)}")
        return MODEL_FORMATS[suffix]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object, name: str = "model") -> ModelEntry:
        d = checks.mapping(data, name)
        _exact_keys(d, {f.name for f in fields(cls)}, name)
        return cls(**d)


def _source(data: object, index: int) -> SourceThreshold:
    if isinstance(data, SourceThreshold):
        data = data.to_dict()
    name = f"threshold.sources[{index}]"
    d = checks.mapping(data, name)
    base = {"source", "count", "threshold"}
    _exact_keys(d, base | {"rule", "at_target_far"} if "rule" in d or "at_target_far" in d else base, name)
    capped = {}
    if "rule" in d:
        capped = {"rule": _text(d["rule"], f"{name}.rule"),
                  "at_target_far": None if d["at_target_far"] is None
                  else checks.number(d["at_target_far"], f"{name}.at_target_far", low=-1.0, high=1.0)}
    return SourceThreshold(_text(d["source"], f"{name}.source"), checks.integer(d["count"], f"{name}.count", low=1),
                           checks.number(d["threshold"], f"{name}.threshold", low=-1.0, high=1.0), **capped)


@dataclass(frozen=True)
class Threshold:
    """The open-set decision threshold on the dot-product score and how it was obtained.

    ``calibrated`` is True when ``value`` was fitted to reach the false-accept rate
    ``target_far``. Since format_version 2 the export records how: ``method`` (e.g.
    :data:`~muselens.core.metrics.threshold.METHOD`) and ``sources``, each source of
    negatives with its count and the threshold it alone gives; ``n_distractors`` is then the
    count of the museum's own distractors among them (0 for a museum without any). Version 1
    thresholds have neither, are calibrated on ``n_distractors`` >= 1 distractor images, or are
    uncalibrated: no target (``target_far`` None), a configured default such as -1.0.
    """

    value: float
    target_far: float | None
    n_distractors: int
    calibrated: bool
    method: str | None = None
    sources: tuple[SourceThreshold, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", checks.number(self.value, "threshold.value", low=-1.0, high=1.0))
        object.__setattr__(self, "calibrated", checks.flag(self.calibrated, "threshold.calibrated"))
        object.__setattr__(self, "n_distractors",
                           checks.integer(self.n_distractors, "threshold.n_distractors", low=0))
        if self.target_far is not None:
            object.__setattr__(self, "target_far",
                               checks.number(self.target_far, "threshold.target_far", low=0.0, high=1.0))
        self._check_sources()
        if self.calibrated:
            if self.n_distractors < 1 and not self.sources:
                raise ValueError("a calibrated threshold needs n_distractors >= 1 (or its sources)")
            if self.target_far is None:
                raise ValueError("a calibrated threshold needs its target_far")

    def _check_sources(self) -> None:
        if self.method is not None:
            _text(self.method, "threshold.method")
        if isinstance(self.sources, (str, bytes, Mapping)) or not isinstance(self.sources, (list, tuple)):
            raise TypeError(f"threshold.sources must be a list of sources, got {type(self.sources).__name__}")
        sources = tuple(_source(source, i) for i, source in enumerate(self.sources))
        object.__setattr__(self, "sources", sources)
        if (self.method is None) != (not sources):
            raise ValueError("threshold.method and threshold.sources come together: how the threshold was set "
                             "and on what")
        if not sources:
            return
        if not self.calibrated:
            raise ValueError("a threshold with sources is calibrated on them: calibrated must be True")
        names = [s.source for s in sources]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"threshold source {repeated[0]!r} repeats")
        distractors = next((s.count for s in sources if s.source == DISTRACTORS), 0)
        if self.n_distractors != distractors:
            raise ValueError(f"threshold.n_distractors {self.n_distractors} must be the count of its "
                             f"{DISTRACTORS!r} source, {distractors}")
        highest = max(s.threshold for s in sources)
        if self.method == METHOD and self.value != highest:
            raise ValueError(f"threshold.value {self.value} must be the highest of its sources' thresholds "
                             f"({highest}) with method {METHOD!r}")

    @classmethod
    def from_calibration(cls, calibration: ThresholdCalibration) -> Threshold:
        """The manifest's record of :func:`~muselens.core.metrics.threshold.calibrate_sources`."""
        if not isinstance(calibration, ThresholdCalibration):
            raise TypeError(f"calibration must be a ThresholdCalibration, got {type(calibration).__name__}")
        distractors = next((s.count for s in calibration.sources if s.source == DISTRACTORS), 0)
        return cls(calibration.value, calibration.target_far, distractors, True, METHOD, calibration.sources)

    def describe(self) -> str:
        """One line for a person: the value and how it was set."""
        if self.sources:
            return ThresholdCalibration(self.value, self.target_far, self.sources).describe()
        if self.calibrated:
            return f"{self.value:.4f} at FAR {self.target_far:g} on {self.n_distractors} distractors"
        return f"{self.value:.4f} (uncalibrated)"

    def to_dict(self) -> dict[str, Any]:
        """Version 1's four keys, plus ``method`` and ``sources`` when it has them."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("method", "sources")}
        if self.sources:
            out["method"] = self.method
            out["sources"] = [s.to_dict() for s in self.sources]
        return out

    @classmethod
    def from_dict(cls, data: object) -> Threshold:
        d = checks.mapping(data, "threshold")
        legacy = {"value", "target_far", "n_distractors", "calibrated"}
        _exact_keys(d, legacy | {"method", "sources"} if "method" in d or "sources" in d else legacy, "threshold")
        return cls(**d)


@dataclass(frozen=True)
class Manifest:
    """Everything about a bundle except its bulk data; validated on construction.

    Mappings are stored read-only (``files``, ``training``, ``metrics``; ``descriptor`` is a frozen
    :class:`~muselens.core.descriptor_contract.DescriptorContract`),
    so the manifest the runtime loaded cannot drift from the file it was read from.
    """

    name: str
    bundle_version: str
    backbone: str
    descriptor: DescriptorContract
    models: Mapping[str, ModelEntry]
    default_variant: str
    files: Mapping[str, str]
    training: Mapping[str, Any]
    data_digest: str
    metrics: Mapping[str, Mapping[str, float]]
    threshold: Threshold
    created: str
    muselens_version: str
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    local_features: FeatureConfig | None = None  # with LOCAL_FEATURES_FILE among the files
    verification: Mapping[str, Any] | None = None  # how verification weighs a fit, measured at export

    __hash__ = None  # mappings inside; equality compares content

    def __post_init__(self) -> None:
        check_format({"format": self.format, "format_version": self.format_version})
        for name in ("name", "bundle_version", "backbone", "muselens_version"):
            _text(getattr(self, name), name)
        _check_created(self.created)
        if not isinstance(self.descriptor, DescriptorContract):
            self._set("descriptor", DescriptorContract.from_dict(self.descriptor, "descriptor"))
        self._set("models", self._check_models(self.models))
        if self.default_variant not in self.models:
            raise ValueError(f"default_variant {self.default_variant!r} is not one of the models "
                             f"{sorted(self.models)}")
        self._set("files", self._check_files(self.files))
        self._set("training", freeze(checks.mapping(self.training, "training"), "training"))
        if not is_sha256(self.data_digest):
            raise ValueError(f"data_digest must be 64 lowercase hex digits (see dataset_digest), "
                             f"got {self.data_digest!r}")
        self._set("metrics", self._check_metrics(self.metrics))
        if isinstance(self.threshold, Mapping):
            self._set("threshold", Threshold.from_dict(self.threshold))
        elif not isinstance(self.threshold, Threshold):
            raise TypeError(f"threshold must be a Threshold or dict, got {type(self.threshold).__name__}")
        if self.threshold.sources and self.format_version < THRESHOLD_SOURCES_VERSION:
            raise ValueError(f"threshold sources need format_version {THRESHOLD_SOURCES_VERSION}, "
                             f"this manifest is version {self.format_version}")
        self._check_local_features()

    def _check_local_features(self) -> None:
        if isinstance(self.local_features, Mapping):
            self._set("local_features", FeatureConfig.from_dict(dict(checks.mapping(self.local_features,
                                                                                    "local_features"))))
        elif self.local_features is not None and not isinstance(self.local_features, FeatureConfig):
            raise TypeError(f"local_features must be a FeatureConfig, a dict or None, "
                            f"got {type(self.local_features).__name__}")
        if self.local_features is not None and self.format_version < LOCAL_FEATURES_VERSION:
            raise ValueError(f"local features need format_version {LOCAL_FEATURES_VERSION}, "
                             f"this manifest is version {self.format_version}")
        if self.verification is not None:
            if self.local_features is None:
                raise ValueError("verification settings need local features")
            record = checks.mapping(self.verification, "verification")
            weight = checks.number(record.get("evidence_weight"), "verification.evidence_weight", low=0, low_open=True)
            if not math.isfinite(weight):
                raise ValueError(f"verification.evidence_weight must be finite, got {weight}")
            self._set("verification", freeze(record, "verification"))
        if (self.local_features is None) != (LOCAL_FEATURES_FILE not in self.files):
            raise ValueError(f"local_features and files[{LOCAL_FEATURES_FILE!r}] come together: the manifest "
                             f"has {'the file' if self.local_features is None else 'the config'} only")
        if VOTE_INDEX_FILE in self.files:
            if self.local_features is None:
                raise ValueError(f"files[{VOTE_INDEX_FILE!r}] indexes local features, and the manifest has none")
            if self.format_version < VOTE_INDEX_VERSION:
                raise ValueError(f"a vote index needs format_version {VOTE_INDEX_VERSION}, "
                                 f"this manifest is version {self.format_version}")

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen dataclass in __post_init__

    @staticmethod
    def _check_models(models: object) -> Mapping[str, ModelEntry]:
        m = checks.mapping(models, "models")
        if not m:
            raise ValueError("models must list at least one variant")
        out = {}
        for variant, entry in m.items():
            if not isinstance(variant, str) or not _VARIANT.match(variant):
                raise ValueError(f"model variant names are letters, digits, '_' and '-' "
                                 f"(e.g. 'fp16'), got {variant!r}")
            if isinstance(entry, Mapping):
                entry = ModelEntry.from_dict(entry, f"models.{variant}")
            elif not isinstance(entry, ModelEntry):
                raise TypeError(f"models.{variant} must be a ModelEntry or dict, "
                                f"got {type(entry).__name__}")
            if entry.file != model_file(variant):
                raise ValueError(f"models.{variant}.file must be {model_file(variant)!r}, "
                                 f"got {entry.file!r}")
            out[variant] = entry
        return MappingProxyType(dict(sorted(out.items())))

    @staticmethod
    def _check_files(files: object) -> Mapping[str, str]:
        f = checks.mapping(files, "files")
        optional = {key for key in f if isinstance(key, str) and
                    (REFERENCE_PHOTO.fullmatch(key) or key in (LOCAL_FEATURES_FILE, VOTE_INDEX_FILE))}
        _exact_keys({k: v for k, v in f.items() if k not in optional}, set(DATA_FILES), "files")
        for path, digest in f.items():
            if not is_sha256(digest):
                raise ValueError(f"files[{path!r}] must be 64 lowercase hex digits, got {digest!r}")
        return freeze(f, "files")

    def _check_metrics(self, metrics: object) -> Mapping[str, Mapping[str, float]]:
        m = checks.mapping(metrics, "metrics")
        for variant, values in m.items():
            if variant not in self.models:
                raise ValueError(f"metrics for {variant!r}, which is not one of the models "
                                 f"{sorted(self.models)}")
            values = checks.mapping(values, f"metrics.{variant}")
            missing = [k for k in REQUIRED_METRICS if k not in values]
            if missing:
                raise ValueError(f"metrics.{variant} lacks {missing}")
            for key, value in values.items():
                if not isinstance(key, str):
                    raise TypeError(f"metrics.{variant} has a non-string key {key!r}")
                if key in REQUIRED_METRICS:
                    checks.number(value, f"metrics.{variant}.{key}", low=0.0, high=1.0)
                else:
                    checks.number(value, f"metrics.{variant}.{key}")
        return freeze(m, "metrics")

    def model(self, variant: str | None = None) -> ModelEntry:
        """The entry of ``variant`` (default: ``default_variant``); unknown names are refused."""
        variant = self.default_variant if variant is None else variant
        if variant not in self.models:
            raise KeyError(f"bundle {self.name!r} has no model variant {variant!r}; "
                           f"it has {sorted(self.models)}")
        return self.models[variant]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field (without the self-checksum)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "descriptor":
                value = value.to_dict()
            elif f.name == "models":
                value = {k: v.to_dict() for k, v in value.items()}
            elif f.name == "threshold":
                value = value.to_dict()
            elif f.name in OPTIONAL_FIELDS:
                if value is None:
                    continue  # absent, as in every manifest written before it existed
                value = value.to_dict() if hasattr(value, "to_dict") else value
            out[f.name] = thaw(value)
        return out

    @classmethod
    def from_dict(cls, data: object) -> Manifest:
        """Rebuild and validate a manifest; unknown or missing keys are errors."""
        d = checks.mapping(data, "manifest")
        check_format(d)
        names = {f.name for f in fields(cls)}
        _exact_keys(d, names - {k for k in OPTIONAL_FIELDS if k not in d}, "manifest")
        return cls(**d)

    def to_json(self) -> bytes:
        """The bytes of ``manifest.json``: every field plus ``manifest_sha256`` over them."""
        content = self.to_dict()
        return _json.dumps({**content, CHECKSUM_KEY: sha256_bytes(_json.canonical(content))})

    @classmethod
    def from_json(cls, data: bytes, source: str = MANIFEST_FILE) -> Manifest:
        """Parse ``manifest.json``: format and version first, then the self-checksum, then fields."""
        raw = _json.loads(data, source)
        if not isinstance(raw, dict):
            raise ValueError(f"{source} must hold a JSON object, got {type(raw).__name__}")
        check_format(raw)
        if CHECKSUM_KEY not in raw:
            raise ValueError(f"{source} has no {CHECKSUM_KEY}")
        expected = raw.pop(CHECKSUM_KEY)
        actual = sha256_bytes(_json.canonical(raw))
        if expected != actual:
            raise ValueError(f"{source} checksum mismatch: {CHECKSUM_KEY} says {expected}, its "
                             f"content hashes to {actual} (the manifest was edited or corrupted)")
        return cls.from_dict(raw)
