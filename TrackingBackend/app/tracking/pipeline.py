"""The per-frame tracking pipeline: gray frame in, EyeResult out (pure composition, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from app.camera.base import GrayImage
from app.config.models import CalibrationConfig, FilterConfig, TrackerConfig
from app.tracking.calibration import GazeCalibrator, map_gaze, recentered
from app.tracking.eye_closure import PLAIN_PUPIL, ClosingFlag, EyeClosureClassifier
from app.tracking.filters import OneEuroFilter
from app.tracking.openness import LidEstimator, LidState
from app.tracking.pupil.gate import PupilGate
from app.tracking.pupil.tracker import MAX_REFINES_PER_FRAME, PupilTracker
from app.tracking.results import EyeResult, PupilResult
from app.tracking.still import StillFrames

# A frame the classifier finds this surely closed or closing refines at most CLOSING_REFINES_PER_FRAME pupil candidates.
CLOSING_SEARCH_PROBABILITY = 0.9
CLOSING_REFINES_PER_FRAME = 2
# Openness is capped at 1 - this x the eye-closure probability. On MEYE (networks trained without the subject scored)
# it took the closed-or-closing frames' mean openness 0.425 -> 0.373 and those read >= 0.88 from 24.5 % to 18.7 %,
# open frames 0.990 -> 0.989; the virtual eye's openness error fell a little on every set. 0.8 capped real VR eyes
# looking down (where the network is unsure, p ~0.85) too far.
CLOSING_OPENNESS_DROP = 0.6
# A frame's result may be reused by the still frames after it when its pupil was found at least this surely.
KEY_MIN_CONFIDENCE = 0.9


class _Filters:
    def __init__(self, config: FilterConfig) -> None:
        gaze = (config.min_cutoff, config.beta, config.d_cutoff)
        lids = (config.openness_min_cutoff, config.openness_beta, config.d_cutoff)
        self.enabled = config.enabled
        self.gaze_x, self.gaze_y = OneEuroFilter(*gaze), OneEuroFilter(*gaze)
        self.openness, self.widen, self.squeeze = OneEuroFilter(*lids), OneEuroFilter(*lids), OneEuroFilter(*lids)
        self.dilation = OneEuroFilter(*gaze)

    def apply(self, filt: OneEuroFilter, value: float, ts: float) -> float:
        return filt(value, ts) if self.enabled else value


class EyePipeline:
    """Stateful per-tracker pipeline. The tracker process owns one; tests and `analyze` call it directly.

    `closure_model`: the eye-closure classifier's weights (ONNX bytes) when not the shipped ones.
    """

    def __init__(self, config: TrackerConfig, closure_model: bytes | None = None) -> None:
        self.config = config
        self._pupils = PupilTracker(config.algorithm)
        self._gate = PupilGate()
        self.closed_eye_skips = 0  # frames the closed-eye gate kept from the pupil search
        self.short_searches = 0  # frames searched with the smaller budget of a closing eye
        self._lids = LidEstimator(config.algorithm.confidence_threshold)
        self._closure = EyeClosureClassifier(closure_model)
        self._closing = ClosingFlag()
        self._pupil_unclear = True  # the last frame's pupil was not plainly seen
        self._filters = _Filters(config.filter)
        self._calibrator = GazeCalibrator()
        self._calibration_update: CalibrationConfig | None = None
        self._last_norm: tuple[float, float] | None = None
        self._last_gaze = (0.0, 0.0)
        self._still = StillFrames()
        self._key: PupilResult | None = None  # the pupil of the frame still frames reuse (the key frame)

    @property
    def closure_problem(self) -> str:
        """Why the eye-closure network is not running, or "" (see app.tracking.eye_closure)."""
        return self._closure.problem if self.config.algorithm.closure_classifier else ""

    @property
    def refinements(self) -> int:
        """Pupil candidates refined so far (see app.tracking.pupil.tracker.PupilTracker.refinements)."""
        return self._pupils.refinements

    @property
    def unavailable_algorithms(self) -> list[str]:
        """Configured algorithms that cannot run here (LEAP: no model bundled); they are skipped."""
        return list(self._pupils.unavailable_algorithms)

    def update_config(self, config: TrackerConfig) -> None:
        """Hot reload: algorithms and filters follow the new config; tracking and lid statistics are kept."""
        old = self.config
        self.config = config
        if config.algorithm != old.algorithm:
            self._pupils.update_config(config.algorithm)
            self._lids.confident = config.algorithm.confidence_threshold
            self._key = None  # tracked under the old settings: not reused under the new ones
            self._still.forget()
        if config.filter != old.filter:
            self._filters = _Filters(config.filter)

    def start_calibration(self, ts: float) -> None:
        """Begin a timed calibration at time `ts` (seconds, same clock as `process`)."""
        self._calibrator.start(ts)

    def recenter(self) -> None:
        """Make the current gaze the centre."""
        if self._last_norm is None:
            return
        calibration = recentered(self.config.calibration, *self._last_norm)
        self.config = self.config.model_copy(update={"calibration": calibration})
        self._calibration_update = calibration

    def take_calibration_update(self) -> CalibrationConfig | None:
        """The calibration produced by a finished calibration or a recenter, once; None otherwise."""
        update, self._calibration_update = self._calibration_update, None
        return update

    def upkeep(self) -> None:
        """Work the last frame made due that its result does not wait for (the lids' refits). `process` runs it first
        if the caller has not: the tracker process calls it after sending each result, off the latency path."""
        self._lids.upkeep()

    def process(self, gray: GrayImage, ts: float) -> EyeResult:
        self.upkeep()
        algorithm = self.config.algorithm
        # A closed eye skips the pupil search (see app.tracking.pupil.gate); a still one reuses the last frame tracked
        # in full (app.tracking.still). Both look at the frame shrunk and blurred.
        gated = algorithm.closed_eye_gate and gray.size > 0
        searched = gray.size > 0 and (not gated or self._gate.allows(gray))
        if gated and not searched:
            self.closed_eye_skips += 1
        small = None
        if algorithm.still_frame_reuse and searched:
            small = self._gate.last_small if gated else self._gate.observe(gray)
            if small is not None and self._key is not None and self._still.still(small, self._gate.contrast):
                # The key frame's pupil and lid measurements again; the lids' statistics and blink state go on.
                return self._output(self._track(gray, searched, learn=False, still=self._key), gray.shape, ts)
        raw = self._track(gray, searched, gated or small is not None)
        # Until the lids' statistics are learnt every frame teaches them: no frame is reused before.
        if small is not None and self._lids.settled and _makes_key(raw, algorithm.confidence_threshold):
            self._key = raw.pupil
            self._still.keep(small)
        else:
            self._key = None
            self._still.forget()
        return self._output(raw, gray.shape, ts)

    @property
    def still_frames(self) -> int:
        """Frames that reused the last frame tracked in full (see app.tracking.still)."""
        return self._still.reused

    def _track(self, gray: GrayImage, searched: bool, learn: bool, still: PupilResult | None = None) -> _Raw:
        """The frame's pupil, lids and closure, before calibration and filters; `still`: the key frame's pupil, for a
        frame that shows what the key frame showed (nothing is searched or measured again)."""
        classify = self.config.algorithm.closure_classifier and gray.size > 0 and still is None
        probability: float | None = None
        refines = MAX_REFINES_PER_FRAME
        if classify and searched and self._pupil_unclear:
            # The pupil was not plainly seen last frame: if the eye is now plainly closing, a sliver of pupil under
            # the lids must not get every candidate refined (10-20 ms a frame, the pipeline's slowest frames).
            probability = self._closure.closed_probability(gray)
            if probability >= CLOSING_SEARCH_PROBABILITY:
                refines = CLOSING_REFINES_PER_FRAME
                self.short_searches += 1
        if still is not None:
            pupil = still
        elif searched:
            pupil = self._pupils.detect(gray, refines)
        else:
            pupil = PupilResult.none()
        if learn:
            self._gate.learn(pupil)
        lids = self._lids.update(gray, pupil, still=still is not None)
        self._pupil_unclear = lids.visibility < PLAIN_PUPIL
        # Closed lids are a blink already (and hold the gaze, below); the classifier adds closing eyes. A plainly seen
        # pupil overrules it (most open-eye frames), and on closed lids it has nothing to add: it is not run there.
        closure = 0.0
        if classify and not lids.blink and self._pupil_unclear:
            closure = self._closure.closed_probability(gray) if probability is None else probability
        blink = lids.blink or self._closing.update(closure)
        # Some pupil still shows in a closing eye, and the lids then read it mostly open: the network's certainty caps
        # openness, at 1 - CLOSING_OPENNESS_DROP when sure (it learnt "closing" as under 0.4 open).
        openness = min(lids.openness, 1.0 - CLOSING_OPENNESS_DROP * closure)
        return _Raw(pupil, lids, blink, openness, closure, plain=not self._pupil_unclear)

    def _output(self, raw: _Raw, shape: tuple[int, ...], ts: float) -> EyeResult:
        """Calibration, gaze mapping and filters on a frame's raw measurements."""
        height, width = shape[:2]
        pupil, lids = raw.pupil, raw.lids
        found = pupil.confidence >= self.config.algorithm.confidence_threshold
        norm = (pupil.x / max(width, 1), pupil.y / max(height, 1)) if found else None
        if norm is not None:
            self._last_norm = norm
        progress = self._calibrator.progress(ts, self.config.calibration.duration_s)
        if self._calibrator.active:
            finished = self._calibrator.add(
                norm[0] if norm else None, norm[1] if norm else None, ts, self.config.calibration
            )
            if finished is not None:
                self.config = self.config.model_copy(update={"calibration": finished})
                self._calibration_update = finished
        if norm is not None and not lids.blink:
            gx, gy = map_gaze(norm[0], norm[1], self.config.calibration.mapping)
            if self.config.camera.flip_x_axis:
                gx = -gx
            if self.config.camera.flip_y_axis:
                gy = -gy
            self._last_gaze = (gx, gy)
        f = self._filters
        gaze_x = f.apply(f.gaze_x, self._last_gaze[0], ts)
        gaze_y = f.apply(f.gaze_y, self._last_gaze[1], ts)
        return EyeResult(
            pupil=pupil,
            gaze_x=_clip(gaze_x, -1.0, 1.0),
            gaze_y=_clip(gaze_y, -1.0, 1.0),
            openness=_clip(f.apply(f.openness, raw.openness, ts)),
            blink=raw.blink,
            dilation=_clip(f.apply(f.dilation, lids.dilation, ts)),
            widen=_clip(f.apply(f.widen, lids.widen, ts)),
            squeeze=_clip(f.apply(f.squeeze, lids.squeeze, ts)),
            calibration_progress=progress,
            raw_openness=raw.openness,
            closure=raw.closure,
        )


@dataclass(frozen=True, slots=True)
class _Raw:
    """One frame's measurements before calibration and filters."""

    pupil: PupilResult
    lids: LidState
    blink: bool
    openness: float
    closure: float
    plain: bool  # the pupil was plainly seen (not partly hidden)


def _makes_key(raw: _Raw, confidence_threshold: float) -> bool:
    """Whether a still frame may reuse this result: a plainly seen pupil, surely found, no blink."""
    return raw.plain and not raw.blink and raw.pupil.confidence >= max(KEY_MIN_CONFIDENCE, confidence_threshold)


def _clip(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return min(max(value, low), high)
