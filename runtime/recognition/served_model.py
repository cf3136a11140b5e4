"""One servable museum: a verified bundle, its inference backend and its gallery search.

:class:`ServedModel` is immutable: enrolling an artwork or loading another bundle builds a new
one (sharing what did not change) and :class:`~muselens.runtime.recognition.holder.ModelHolder`
swaps it in, so a call that already holds a model finishes on it undisturbed. It knows nothing
of gRPC; the service translates messages to and from :meth:`ServedModel.recognize`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from muselens.runtime.bundle import Bundle, Gallery, LabelInfo, load_bundle
from muselens.runtime.engine import DEFAULT_BACKEND, Cancellation, Describer
from muselens.runtime.engine.blas_threads import one_blas_thread
from muselens.runtime.engine.gate import CLIENT_USE, InferenceGate, current_key
from muselens.runtime.frames import SizeNeed
from muselens.runtime.recognition.decision_rule import DEFAULT_UNCERTAIN_MARGIN, Decision, decide, decide_verified
from muselens.runtime.recognition.explainer import REFERENCE_CACHE_BYTES, Explainer, HeatmapResult
from muselens.runtime.recognition.options import RecognizeOptions
from muselens.runtime.recognition.regional import (DEFAULT_REGIONAL_CANDIDATES, best_regional_scores,
                                                   holding_centre, regional_candidates, regional_descriptors,
                                                   rmac_regions)
from muselens.runtime.recognition.search import GallerySearch
from muselens.runtime.recognition.variant_choice import VariantChoice, choose_variant_by_speed
from muselens.runtime.verification import (DEFAULT_SHORTLIST, NO_FEATURES, NOT_ASKED, OVER_SHARE, LocalFeatures,
                                           ShortlistVerifier, VerificationReport)
from muselens.runtime.verification.shortlist import INLIER_WEIGHT, evidence
from muselens.runtime.verification.voting import omp_threads

STAGES = ("queue", "decode", "preprocess", "track", "inference", "match", "verify", "heatmap", "total")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Match:
    instance_id: str
    title: str
    score: float
    metadata: Mapping[str, str] = field(default_factory=dict)
    inliers: int = 0  # the fit of its reference into the frame, when verification fitted it


@dataclass(frozen=True)
class RecognitionResult:
    """One frame's answer, gRPC-free (the service converts it to a ``Recognition`` message)."""

    decision: Decision
    matches: tuple[Match, ...]
    threshold: float
    bundle_version: str
    timings_ms: Mapping[str, float]
    heatmaps: tuple[HeatmapResult, ...] = ()
    verification: VerificationReport = NOT_ASKED
    descriptor: np.ndarray | None = field(default=None, repr=False)  # the frame's, for later verification
    regional: tuple[str, ...] = ()  # artworks parts of the frame rank first, beyond the shortlist: to verify too
    # What a later verification of this frame fits, and where a fitted artwork's evidence starts, as
    # a verifying call would: a stream's background verification must judge the frame the same way.
    shortlist: tuple[str, ...] = ()  # the descriptor's shortlist, then ``regional``
    part_scores: Mapping[str, float] | None = field(default=None, repr=False)  # each artwork's best over parts

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None


def verify_shortlist(verifier: ShortlistVerifier, search: GallerySearch, image: np.ndarray,
                     instance_ids: Sequence[str], descriptor: np.ndarray, *, keep_pairs: bool = False,
                     check: Callable[[], None] | None = None,
                     regional_scores: Mapping[str, float] | None = None,
                     search_threads: int | None = None) -> VerificationReport:
    """Fit the artworks of ``instance_ids`` (the descriptor's shortlist, best first) and those the
    frame's keypoints vote for into the RGB frame ``image``: what the service does, and what the
    export measures the evidence weight with. Each artwork is tried through its references in the
    order of the frame's votes for them, then of their similarity to ``descriptor``. With
    ``regional_scores``, an artwork that fits has its evidence start from its best score over
    parts of the frame where that beats the whole frame's (see :mod:`.regional`).
    ``search_threads``: faiss's OpenMP threads for the vote search and the ratio matching (None:
    every core)."""
    frame = verifier.frame_features(image)
    with omp_threads(search_threads):
        return _verify_candidates(verifier, search, frame, instance_ids, descriptor, keep_pairs=keep_pairs,
                                  check=check, regional_scores=regional_scores)


def _verify_candidates(verifier: ShortlistVerifier, search: GallerySearch, frame: LocalFeatures,
                       instance_ids: Sequence[str], descriptor: np.ndarray, *, keep_pairs: bool,
                       check: Callable[[], None] | None,
                       regional_scores: Mapping[str, float] | None) -> VerificationReport:
    row_votes = verifier.row_votes(frame)
    voted = verifier.voted(row_votes, instance_ids)
    candidates = []
    for instance_id in [*instance_ids, *voted]:
        rows = search.references(instance_id)
        similarity = search.gallery.descriptors[rows] @ descriptor
        order = np.lexsort((-similarity, -row_votes[rows])) if row_votes is not None else \
            np.argsort(-similarity, kind="stable")
        score = float(search.vector(instance_id) @ descriptor)
        if regional_scores is not None:  # if it fits, as much as the part of the frame that shows it best
            candidates.append((instance_id, score, rows[order], regional_scores.get(instance_id, score)))
        else:
            candidates.append((instance_id, score, rows[order]))
    report = verifier.verify(frame, candidates, keep_pairs=keep_pairs, check=check)
    return replace(report, voted=tuple(voted)) if voted else report


@dataclass(frozen=True)
class ServingConfig:
    """How the service runs a bundle: backend, variant, search engine, decision margin."""

    backend: str = DEFAULT_BACKEND
    variant: str | None = None
    threads: int | None = None
    device_id: int = 0
    search: str = "auto"
    uncertain_margin: float = DEFAULT_UNCERTAIN_MARGIN
    short_side: int | None = None
    inference_slots: int | None = None  # runs in flight at once; None: the backend's default
    reference_cache_bytes: int = REFERENCE_CACHE_BYTES  # reference photos' maps kept for explanations
    allow_ort_telemetry: bool = False  # ONNX Runtime's usage telemetry: off unless the operator allows it
    verify: bool = True  # verify unary answers geometrically unless a call says otherwise (needs local features)
    vote: bool = True  # also verify the artworks the frame's local features vote for (recall beyond the shortlist)
    shortlist: int = DEFAULT_SHORTLIST  # artworks of the global ranking that verification fits
    reduced_decode: bool = True  # decode a JPEG frame no larger than recognition (and verification) need
    regional: int = DEFAULT_REGIONAL_CANDIDATES  # artworks parts of the frame rank first, also verified (0: none)


AUTO_VARIANT = "auto"


def choose_variant(bundle: Bundle, config: ServingConfig) -> str:
    """The model variant to serve: the one asked for, else the bundle's default -- for the native
    ``tensorrt`` backend its first TensorRT engine -- checked against what the backend can run.
    (``"auto"``, the fastest accurate one, is chosen by :meth:`ServedModel.load`.)"""
    models = bundle.manifest.models
    wants = "tensorrt" if config.backend == "tensorrt" else "onnx"
    variant = config.variant
    if variant is None:
        variant = bundle.manifest.default_variant
        if wants == "tensorrt":
            engines = [v for v, entry in models.items() if entry.format == "tensorrt"]
            if not engines:
                raise ValueError(f"backend 'tensorrt' needs a TensorRT engine, and bundle {bundle.name!r} has "
                                 f"none (variants {sorted(models)}); export it with --tensorrt on the GPU machine")
            variant = engines[0]
    if variant not in models:
        raise ValueError(f"bundle {bundle.name!r} has no variant {variant!r} (it has {sorted(models)})")
    if models[variant].format != wants:
        raise ValueError(f"variant {variant!r} is a {models[variant].format} model, which backend "
                         f"{config.backend!r} cannot run; choose a {wants} variant")
    return variant


@dataclass(frozen=True, eq=False)
class ServedModel:
    bundle: Bundle
    describer: Describer
    search: GallerySearch
    labels: Mapping[str, LabelInfo]
    config: ServingConfig
    variant: str
    enrolled_images: int = 0
    explainer: Explainer = field(default=None)  # type: ignore[assignment]
    verifier: ShortlistVerifier | None = None  # None: the bundle has no local features
    variant_choice: VariantChoice | None = None  # how the variant was chosen, where it was ("auto")
    # Verification is the costliest CPU work of a call (~100 ms of fits): it takes turns between
    # clients like inference does, half the cores at once, so one client's flood of verified calls
    # delays another's by one verification, not by all of them. Where inference runs on the CPU's
    # cores (ort-cpu), a verification also holds one of the inference gate's cores (see verify).
    verify_gate: InferenceGate = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.verifier is None and self.bundle.local_features is not None:
            calibrated = self.bundle.manifest.verification or {}
            object.__setattr__(self, "verifier", ShortlistVerifier(
                self.bundle.local_features, self.bundle.manifest.local_features, self.bundle.gallery.instance_ids,
                vote=self.config.vote, evidence_weight=calibrated.get("evidence_weight", INLIER_WEIGHT),
                vote_index=self.bundle.read_vote_index() if self.config.vote else None))
        if self.verify_gate is None:  # the core it holds is metered where it runs on the cores' gate
            object.__setattr__(self, "verify_gate", InferenceGate(max(1, (os.cpu_count() or 2) // 2),
                                                                  None if self.cores_gated else CLIENT_USE))
        if self.explainer is None:
            object.__setattr__(self, "explainer", Explainer(self.describer, self.bundle.reference_image,
                                                            cache_bytes=self.config.reference_cache_bytes))

    @classmethod
    def load(cls, path: Path | str, config: ServingConfig = ServingConfig()) -> ServedModel:
        """Load and verify a bundle, start the backend, and warm it up with one blank frame. The
        process's BLAS with threads of its own (numpy's) runs on one from then on
        (:mod:`~muselens.runtime.engine.blas_threads`)."""
        one_blas_thread()
        bundle = load_bundle(path)
        opened: dict[str, Describer] = {}

        def open_describer(variant: str) -> Describer:
            if variant not in opened:
                opened[variant] = Describer.open(
                    bundle.model_path(variant), config.backend, threads=config.threads, device_id=config.device_id,
                    contract=bundle.manifest.descriptor, short_side=config.short_side, slots=config.inference_slots,
                    allow_telemetry=config.allow_ort_telemetry, adaptive=True)
            return opened[variant]

        try:
            choice = None
            if config.variant == AUTO_VARIANT:
                choice = choose_variant_by_speed(bundle, open_describer,
                                                 model_format="tensorrt" if config.backend == "tensorrt" else "onnx")
                config = replace(config, variant=choice.variant)
            variant = choose_variant(bundle, config)
            describer = open_describer(variant)
            opened.clear()  # the others' sessions are freed
            model = cls(bundle, describer, GallerySearch(bundle.gallery, config.search),
                        MappingProxyType(dict(bundle.labels)), config, variant, variant_choice=choice)
            model.warm_up()
        except BaseException:
            bundle.close()
            raise
        threshold = bundle.manifest.threshold
        if not threshold.calibrated:  # e.g. -1.0 from an export before issue 18: served as it says, but said
            log.warning("bundle %s %s has an uncalibrated 'no artwork' threshold %.4f: frames scoring above it are "
                        "answered with their best match; export the run again to calibrate it", bundle.name,
                        bundle.bundle_version, threshold.value)
        return model

    # -- what is served -------------------------------------------------------------------

    @property
    def threshold(self) -> float:
        return float(self.bundle.manifest.threshold.value)

    @property
    def bundle_version(self) -> str:
        return self.bundle.bundle_version

    def info(self) -> dict[str, Any]:
        manifest = self.bundle.manifest
        metrics = manifest.metrics.get(self.variant, {})
        return {
            "name": manifest.name, "bundle_version": manifest.bundle_version, "backbone": manifest.backbone,
            "variant": self.variant, "backend": self.describer.backend.describe(),
            "artworks": len(self.search), "reference_images": self.search.gallery.n_images - self.enrolled_images,
            "enrolled_images": self.enrolled_images, "threshold": self.threshold,
            "threshold_calibrated": bool(manifest.threshold.calibrated), "descriptor_dim": self.describer.dim,
            "short_side": self.describer.short_side, "created": manifest.created,
            "metrics": {k: float(metrics[k]) for k in ("mp_at_1", "map", "mp_at_1_ia", "map_ia") if k in metrics},
            "search": self.search.engine,
            "verification": self.verifier.features.kind if self.verifier is not None else "none",
            "variant_choice": self.variant_choice.summary() if self.variant_choice is not None else "",
        }

    def warm_up(self) -> None:
        """One inference on a blank frame, so the first visitor does not pay for lazy initialisation."""
        side = self.describer.short_side
        self.describer.run(np.zeros((side, side, 3), np.uint8), ["descriptor"])
        if self.describer.gate.whole:
            self._warm_side_by_side()

    def _warm_side_by_side(self) -> None:
        """One-core runs, as many at once as the gate allows, at the widest and the tallest input
        the contract makes, twice: the memory arena reaches the size side-by-side runs need now,
        not in the middle of serving (an enrolment's first concurrent runs grew RSS by 73 MiB,
        which stayed)."""
        backend, slots = self.describer.backend, self.describer.gate.slots
        wide = self.describer.output_size(1, 1_000_000)
        shapes = [wide, wide[::-1]] * 2
        with ThreadPoolExecutor(slots, thread_name_prefix="muselens-warm-up") as pool:
            for h, w in shapes:
                batch = np.zeros((1, h, w, 3), np.uint8)
                runs = [pool.submit(backend.run, batch, ["descriptor"], one_thread=True) for _ in range(slots)]
                for run in runs:
                    run.result()  # a failing engine fails the load, as the first warm-up run does

    def close(self) -> None:
        self.bundle.close()

    # -- recognition ----------------------------------------------------------------------

    def verifies(self, options: RecognizeOptions) -> bool:
        """Whether recognising with ``options`` fits the shortlist: asked for, or told it cannot be;
        by the server's default, only where it can be."""
        if options.verify is not None:
            return options.verify
        return self.config.verify and self.verifier is not None

    def decode_need(self, *, describe: bool = True, verify: bool = False) -> SizeNeed | None:
        """How small a frame may be decoded for this model: the recognition size if ``describe``,
        and the size its local features are found at if ``verify``; None where the frame must
        come at its full size (``reduced_decode`` off)."""
        if not self.config.reduced_decode:
            return None
        verifier = self.verifier if verify else None

        def need(height: int, width: int) -> tuple[int, int]:
            h, w = self.describer.output_size(height, width) if describe else (1, 1)
            if verifier is not None:
                vh, vw = verifier.frame_size(height, width)
                h, w = max(h, vh), max(w, vw)
            return h, w

        return need

    def match(self, instance_id: str, score: float, inliers: int = 0) -> Match:
        label = self.labels.get(instance_id)
        title = label.title if label is not None else instance_id
        metadata = dict(label.metadata) if label is not None else {}
        return Match(instance_id, title, float(score), metadata, int(inliers))

    def searches_regions(self) -> bool:
        """Whether parts of a frame can be searched: asked for, verification to use the candidates,
        and a graph that gives each cell's vector and activation."""
        names = self.describer.output_names
        return self.config.regional > 0 and self.verifier is not None and "descriptor_map" in names \
            and "activation" in names

    def _regional(self, query: Mapping[str, np.ndarray], exclude: Sequence[str]
                  ) -> tuple[tuple[str, ...], dict[str, float]]:
        """The artworks the parts of the frame around its centre rank first beyond ``exclude``, and
        every artwork's best score over those parts (where a candidate's evidence starts when verified)."""
        dmap, activation = query["descriptor_map"], query["activation"]
        regions = holding_centre(rmac_regions(*activation.shape), *activation.shape)
        descriptors = regional_descriptors(dmap, activation, self.describer.k, regions)
        best = best_regional_scores(self.search.vectors, descriptors)
        return (regional_candidates(best, self.search.ids, exclude, self.config.regional),
                dict(zip(self.search.ids, best.tolist())))

    def recognize(self, image: np.ndarray, options: RecognizeOptions = RecognizeOptions(), *,
                  cancel: Cancellation | None = None, timings_ms: dict[str, float] | None = None,
                  resized: np.ndarray | None = None, regional: bool | None = None) -> RecognitionResult:
        """Recognise one RGB uint8 frame. ``timings_ms`` may carry stages measured upstream
        (queue, decode, and preprocess where ``resized``, the frame at the recognition size, is
        given: a stream prepares it ahead); the total covers everything recorded. ``regional``:
        search parts of the frame for candidates to verify (None: when this call verifies; a
        stream asks for them for its background verification)."""
        timings = dict(timings_ms or {})
        t0 = time.perf_counter()
        resized_here = resized is None
        if resized_here:
            resized = self.describer.resize(image)
        t1 = time.perf_counter()
        needs_maps = options.explain or options.roi is not None
        regional = (self.verifies(options) if regional is None else regional) and self.searches_regions()
        outputs = ["descriptor", "descriptor_map", "locations"] if needs_maps else ["descriptor"]
        if regional:
            outputs = list(dict.fromkeys([*outputs, "descriptor_map", "activation"]))
        waits: dict[str, float] = {}
        raw = self.describer.run(resized, outputs, cancel, waits)
        query = {name: value[0] for name, value in raw.items()}
        t2 = time.perf_counter()
        descriptor = query["descriptor"].astype(np.float32)
        if options.roi is not None:
            # Ranked by the ROI's contribution; "no artwork" still judged on the winner's whole-frame
            # score (the threshold's scale), "uncertain" on the ROI margin.
            roi = self.explainer.rerank_roi(query, options.roi, options.top_k, self.search)
            ids, scores = roi.instance_ids, roi.roi_scores
            margin = scores[0] - scores[1] if len(scores) > 1 else np.inf
            decision = decide([roi.scores[0], roi.scores[0] - margin], self.threshold, self.config.uncertain_margin)
        else:
            hits = self.search.search(descriptor, max(options.top_k, self.config.shortlist))
            ids, scores = hits.instance_ids, [float(s) for s in hits.scores]
            decision = decide(scores, self.threshold, self.config.uncertain_margin)
        shortlist = tuple(ids[:self.config.shortlist])
        parts, part_scores = self._regional(query, shortlist) if regional else ((), None)
        t3 = time.perf_counter()
        report = NOT_ASKED
        # asked for: verified, or told it cannot be; by the server's default: only where it can be
        if self.verifies(options) and self.verifier is not None and CLIENT_USE.over_share(current_key()):
            report = OVER_SHARE  # this client takes more than its share while others wait: the descriptor answers
        elif self.verifies(options):
            report = self.verify(image, [*shortlist, *parts], descriptor,
                                 keep_pairs=options.explain, cancel=cancel, regional_scores=part_scores)
            if report.verified:  # the shortlist by combined evidence (score and fit), the answer first
                fits = report.inliers_by_artwork
                ids, scores = list(ids), list(scores)
                if report.instance_id not in ids:  # found by the local-feature vote, not the descriptor
                    ids.append(report.instance_id)
                    scores.append(float(self.search.vector(report.instance_id) @ descriptor))
                head = [i for i in range(len(ids)) if i < self.config.shortlist or ids[i] == report.instance_id]
                order = sorted(head, key=lambda i: (ids[i] != report.instance_id,
                                                    -evidence(scores[i], fits.get(ids[i], 0),
                                                              self.verifier.evidence_weight)))
                order += [i for i in range(len(ids)) if i not in head]
                ids, scores = [ids[i] for i in order], [scores[i] for i in order]
            decision = decide_verified(decision, report, self.config.uncertain_margin)
        fits = report.inliers_by_artwork
        matches = tuple(self.match(i, s, fits.get(i, 0)) for i, s in zip(ids[:options.top_k], scores[:options.top_k]))
        t3v = time.perf_counter()
        heatmaps: tuple[HeatmapResult, ...] = ()
        if options.explain and matches:
            if cancel is not None:
                cancel.check()
            heatmaps = self.explainer.explain(query, resized, matches[0].instance_id, options, self.search, cancel)
        t4 = time.perf_counter()
        waited = waits.get("queue", 0.0)  # for an inference slot: queueing, not inference
        timings["queue"] = timings.get("queue", 0.0) + waited
        if resized_here:
            timings["preprocess"] = (t1 - t0) * 1e3
        timings.update(inference=(t2 - t1) * 1e3 - waited, match=(t3 - t2) * 1e3,
                       verify=(t3v - t3) * 1e3 if report is not NOT_ASKED else 0.0, heatmap=(t4 - t3v) * 1e3)
        timings["total"] = sum(timings.get(s, 0.0) for s in STAGES if s != "total")
        return RecognitionResult(decision, matches, self.threshold, self.bundle_version,
                                 MappingProxyType(timings), heatmaps, report, descriptor, parts,
                                 tuple(dict.fromkeys([*shortlist, *parts])), part_scores)

    def verify(self, image: np.ndarray, instance_ids: Sequence[str], descriptor: np.ndarray, *,
               keep_pairs: bool = False, cancel: Cancellation | None = None,
               regional_scores: Mapping[str, float] | None = None,
               search_threads: int | None = None) -> VerificationReport:
        """Fit the references of ``instance_ids`` (a shortlist, best first) into the RGB frame
        ``image``; each artwork through its references most similar to ``descriptor``.
        ``search_threads``: faiss's threads for the vote search and the matching (None: every core;
        a stream's background verification takes one, beside the stream's inferences)."""
        if self.verifier is None:
            return NO_FEATURES
        if cancel is not None:
            cancel.check()
        with self.verify_gate.slot(cancel), self._core(cancel):
            return verify_shortlist(self.verifier, self.search, image, instance_ids, descriptor,
                                    keep_pairs=keep_pairs, check=cancel.check if cancel is not None else None,
                                    regional_scores=regional_scores, search_threads=search_threads)

    @property
    def cores_gated(self) -> bool:
        """Whether the inference gate counts the CPU's cores (ort-cpu), not a device's slots."""
        return self.describer.gate.whole

    def _core(self, cancel: Cancellation | None) -> AbstractContextManager:
        """One of the inference gate's cores for a verification, where that gate counts cores.

        A verification is a core's worth of work for ~50-100 ms. Outside the gate, a heavy client's
        two one-core inferences and a light client's verification were three on two cores: under a
        flood of calls that one client was answered, the other's verification took 57 -> 160 ms
        (``bench abuse``'s unary_flood). Holding a core, it runs beside one inference, not two,
        and waits for the core in turn between clients like inference does."""
        if not self.cores_gated:
            return nullcontext()
        return self.describer.gate.claim(cancel, whole=False)

    def state_bytes(self) -> dict[str, int]:
        """Bytes of what this model holds beside its network, by part: what grows with its references
        (gallery, local features, vote index, enrolled photos) and the explainer's bounded cache of
        reference maps. Memory checks subtract it: an enrolment's references are state, not a leak."""
        gallery = self.search.gallery
        parts = {"gallery": gallery.descriptors.nbytes + gallery.instance_ids.nbytes
                 + gallery.average_descriptors.nbytes + gallery.average_ids.nbytes,
                 "local_features": 0, "vote_index": 0,
                 "enrolled_photos": self.explainer.enrolled_bytes, "reference_maps": self.explainer.cached_bytes}
        if self.verifier is not None:
            parts.update(self.verifier.state_bytes())
        return parts

    # -- enrolment ------------------------------------------------------------------------

    def with_enrolled(self, instance_id: str, title: str, metadata: Mapping[str, str],
                      images: Sequence[np.ndarray]) -> ServedModel:
        """A new model whose gallery also holds ``images`` as references of ``instance_id``."""
        if not images:
            raise ValueError("enrolment needs at least one usable photo")
        descriptors = np.stack([self.describer.describe(image) for image in images])
        gallery: Gallery = self.search.gallery.add(descriptors, instance_id)
        labels = dict(self.labels)
        if instance_id not in labels or title or metadata:
            old = labels.get(instance_id)
            labels[instance_id] = LabelInfo(instance_id, title or (old.title if old else instance_id),
                                            dict(metadata) if metadata else dict(old.metadata) if old else {})
        explainer = self.explainer.with_references(self.search.gallery.n_images,
                                                   [self.describer.resize(image) for image in images])
        verifier = self.verifier.extended(images, instance_id) if self.verifier is not None else None
        return replace(self, search=GallerySearch(gallery, self.search.engine if self.search.engine != "exact"
                                                  else self.config.search),
                       labels=MappingProxyType(labels), enrolled_images=self.enrolled_images + len(images),
                       explainer=explainer, verifier=verifier)
