"""Finding, judging and cutting beats in a continuous single-lead ECG, strip by strip.

The one segmentation that the daemon runs on watch strips and training runs on recorded ECG, so a beat the
model was fitted on and a beat it scores are cut the same way. Per device, :func:`push` takes the device's
:class:`Track` (what it remembers of the stream) and the next strip, and returns the new track and the beats
it could complete. Measured on six MIT-BIH records streamed as 2-60 s strips (docs/segmentation.md).

- **Cleaning**: zero-phase Butterworth band-pass 0.5-40 Hz with 50 and 60 Hz notches. Without the notches,
  mains at twice the QRS amplitude stopped detection entirely.
- **Detection**: NeuroKit2's ``neurokit`` R-peak detector (the only one of its detectors that reached
  Se and +P >= 99.5% on 10 s strips; the adaptive thresholds of Pan-Tompkins or Hamilton need longer
  history), on ``|x|`` so a beat pointing either way is found, at up to 350/min; see :func:`detect`.
  On the 22 DS1 people: Se 99.73%, +P 99.76% (OSEA 99.68%, 99.77%).
- **Strip boundaries**: the previous strip's last :data:`CONTEXT_S` seconds are prepended; detections in
  the last :data:`GUARD_S` of a strip are deferred to the next one, which sees them with context on both
  sides; a refractory period drops the rare beat found on both sides. A gap (a missing seq, a ts jump, a
  new sampling rate) starts a new run: nothing is glued over it.
- **Polarity**: per device, not per strip (per-strip decisions flipped on 8-42% of strips of some records):
  an exponential average of a per-strip score decides, with a dead band.
- **Cutting**: beat i is the R-R window from R_i to R_(i+1), both moved back by :data:`LEAD_FRACTION` of
  the interval, with the dominant QRS deflection negative, linearly resampled to the model's length: how
  ECG5000's beats look (their QRS extreme sits 3.5 of 139 intervals into the window).
- **Quality**: :mod:`ecgwatch.detection.quality` judges each beat and strip; an unreadable beat is never
  scored as an anomaly.
"""

from __future__ import annotations

import base64
import functools
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import signal as sps

from ecgwatch.detection.quality import (
    AMPLITUDE_GATE,
    QRS_HALF_S,
    Indices,
    beat_quality,
    qrs_amplitudes,
    quality_indices,
    strip_quality,
)

CONTEXT_S = 3.0  # previous samples prepended: detector context, and windows of beats that straddle strips
GUARD_S = 0.5  # detections this close to a strip's end wait for the next strip
REFRACTORY_S = MIN_DELAY_S = 0.17  # R peaks closer than this are one beat (350/min: ventricular flutter reaches 300)
CLOSE_S, CLOSE_RATIO = (0.3, 0.4), (0.6, 0.35)  # see _drop_waves
OPPOSITE_WEIGHT = 0.7
LEAD_PAD_S = 0.5  # the detector reports nothing in its first 0.3 s: pad a strip that has no context
POLARITY_TAU_S = 100.0
POLARITY_BAND = 0.3
# A strip scoring this far the other way up is "reversed" until the average turns. On the six MIT-BIH records
# the clean strips stay above -0.3 except in record 114, whose QRS is nearly symmetric (5 of 181 strips below
# -0.5); a lead reversed mid-record gives 8-12 strips below -0.5 before the average turns.
REVERSED_SCORE = 0.5
START_GATE = 0.5  # early detections of a strip without context: T waves of the unseen previous beat
LEAD_FRACTION = 3.5 / 139
MAX_TS_JUMP_S = 0.5  # a strip that starts further than this from where the last one ended is a gap


@dataclass(frozen=True)
class Window:
    """How a beat is cut for a model (its artifact's ``input`` section says which).

    ``rr``: the R-R window, as ECG5000's beats were cut (see :func:`cut_beats`). ``fixed``: a fixed span
    around the R peak (``before_s`` .. ``after_s``), resampled to ``seq_len``, plus ``margin`` samples of the
    same spacing each side, so a device's beats can be re-aligned to its own template.
    """

    kind: str = "rr"
    seq_len: int = 140
    before_s: float = 0.25
    after_s: float = 0.45
    margin: int = 0

    @property
    def length(self) -> int:
        return self.seq_len + 2 * self.margin if self.kind == "fixed" else self.seq_len


@dataclass(frozen=True)
class Strip:
    seq: int
    ts: float  # epoch seconds of the first sample
    fs: float
    samples: np.ndarray


@dataclass(frozen=True)
class Peak:
    """An accepted R peak: where it sits in the run (``index``) and in the strip it came in."""

    index: int
    strip_seq: int
    sample: int


@dataclass
class Track:
    """What a device's stream needs remembered between strips (persisted per device; its tail is most of it)."""

    fs: float
    next_seq: int
    next_ts: float
    run_ts: float  # epoch seconds of index 0 of the current run
    end: int  # index just past the last sample received in this run
    tail: np.ndarray  # the last CONTEXT_S of raw samples, ending at ``end``
    strip_seq: int  # the last strip received, and the index of its first sample
    strip_start: int
    polarity: int = 1
    polarity_average: float | None = None
    deferred: list[int] = field(default_factory=list)  # peaks in the last strip's guard span, to be confirmed
    last_peak: Peak | None = None  # accepted, its beat waits for the next R peak
    last_rr_s: float | None = None
    open: bool = True  # False once closed (see :func:`close`): the next strip starts a new run

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the tail exactly (float64 bytes), so a track read back segments bit for bit alike."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("tail", "last_peak")}
        state["tail"] = base64.b64encode(self.tail.astype("<f8").tobytes()).decode("ascii")
        state["last_peak"] = None if self.last_peak is None else self.last_peak.__dict__
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Track:
        fields = dict(state)
        fields["tail"] = np.frombuffer(base64.b64decode(state["tail"]), dtype="<f8").copy()
        fields["last_peak"] = None if state["last_peak"] is None else Peak(**state["last_peak"])
        return cls(**fields)


@dataclass(frozen=True)
class FoundBeat:
    """A beat the stream completed: its R peak, the beat window (None when incomplete) and its quality."""

    strip_seq: int
    sample: int
    t: float
    rr_s: float | None  # the interval before this beat
    window: np.ndarray | None
    quality: str
    rr_next_s: float | None = None  # the interval after it (known: a beat is complete once its next R is)


@dataclass(frozen=True)
class StripResult:
    track: Track
    beats: list[FoundBeat]
    quality: str  # the strip's own verdict ("ok" or why not)
    contiguous: bool


# --- signal processing ---------------------------------------------------------------------------
def clean(x: np.ndarray, fs: float) -> np.ndarray:
    """Band-pass 0.5-40 Hz and notch 50/60 Hz, zero phase: the copy that detection and cutting use."""
    band, notches = _filters(fs)
    y = sps.sosfiltfilt(band, np.asarray(x, dtype=np.float64))
    for b, a in notches:
        y = sps.filtfilt(b, a, y)
    return np.asarray(y)


@functools.lru_cache(maxsize=16)
def _filters(fs: float) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The filters for one sampling rate, designed once (designing them took a third of a strip's time)."""
    band = sps.butter(2, [0.5, min(40.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    return band, [sps.iirnotch(mains, 30.0, fs=fs) for mains in (50.0, 60.0) if mains < 0.45 * fs]


def warm_up() -> None:
    """Import NeuroKit2 now (1-3 s) rather than inside the first strip's segmentation."""
    import neurokit2  # noqa: F401


def detect(cleaned: np.ndarray, fs: float, pad_s: float = 0.0) -> np.ndarray:
    """R peaks (sample indices) of a cleaned signal whose usual QRS points up; ``pad_s`` of its first value in front.

    NeuroKit2's ``neurokit`` detector finds QRS complexes by the steepness of the signal, then the most
    prominent maximum in each. Run on the signal as it is, it placed nothing in a ventricular beat that
    points the other way (11 of 25 beats of a run of ventricular tachycardia in record 205), and its 0.3 s
    minimum spacing halved any rhythm over 200/min. So it runs on ``|x|`` with a 0.17 s spacing (ventricular
    flutter runs at up to 300/min); :func:`_drop_waves` then removes the P and T waves that a shorter spacing lets in.
    """
    import neurokit2 as nk  # a heavy import, needed only where strips are segmented

    pad = round(pad_s * fs)
    padded = np.concatenate([np.full(pad, cleaned[0]), cleaned]) if pad else cleaned
    if len(padded) < round(fs) or not np.ptp(padded) > 0:
        return np.empty(0, dtype=int)
    peaks = _drop_waves(padded, _find(nk, padded, fs, MIN_DELAY_S), fs)
    peaks = peaks - pad
    return np.unique(peaks[(peaks >= 0) & (peaks < len(cleaned))])


def _find(nk: Any, x: np.ndarray, fs: float, spacing_s: float) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NeuroKit warns on short or flat input; an empty result says it
        found = nk.ecg_findpeaks(np.abs(x), sampling_rate=round(fs), method="neurokit", mindelay=spacing_s)
    peaks = np.asarray(found["ECG_R_Peaks"], dtype=float)
    return peaks[np.isfinite(peaks)].astype(int)


def _steepness(x: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    h = round(QRS_HALF_S * fs)
    slope = np.abs(np.diff(x, prepend=x[0]))
    return np.array([slope[max(0, p - h) : p + h + 1].max() for p in peaks])


def _drop_waves(x: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """Of two peaks closer than a heartbeat can follow another, keep the steeper (a QRS, not a P or T wave).

    A peak pointing against the usual QRS counts :data:`OPPOSITE_WEIGHT` of its steepness: in record 108 the
    P waves are as tall as the QRS and, with noise, nearly as steep. Closer than ``CLOSE_S[0]`` the weaker must
    reach ``CLOSE_RATIO[0]`` of the stronger; up to ``CLOSE_S[1]`` (a PVC's tall T wave) only ``CLOSE_RATIO[1]``,
    so runs of tachycardia whose beats differ in shape keep every beat.
    """
    if len(peaks) < 2:
        return peaks
    strength = _steepness(x, peaks, fs) * np.where(x[peaks] > 0, 1.0, OPPOSITE_WEIGHT)
    keep = [0]
    for i in range(1, len(peaks)):
        j = keep[-1]
        gap = (peaks[i] - peaks[j]) / fs
        ratio = CLOSE_RATIO[0] if gap < CLOSE_S[0] else CLOSE_RATIO[1] if gap < CLOSE_S[1] else None
        if ratio is not None and strength[i] < ratio * strength[j]:
            continue
        if ratio is not None and strength[j] < ratio * strength[i]:
            keep[-1] = i
            continue
        keep.append(i)
    return peaks[keep]


def polarity_score(cleaned: np.ndarray, peaks: np.ndarray, fs: float) -> float:
    """Median over beats of (max + min) / (max - min) around each peak: +1 all-positive QRS, -1 all-negative.

    Exactly antisymmetric under inversion and blind to scale and offset.
    """
    h = round(QRS_HALF_S * fs)
    if not len(peaks):
        return 0.0
    # Every window at once, edge samples repeated where one runs off the signal (their median is unchanged).
    index = np.clip(np.asarray(peaks)[:, None] + np.arange(-h, h + 1)[None, :], 0, len(cleaned) - 1)
    windows = cleaned[index]
    windows = windows - np.median(windows, axis=1, keepdims=True)
    high, low = windows.max(axis=1), windows.min(axis=1)
    return float(np.median((high + low) / (high - low + 1e-12)))


def cut_beats(signal: np.ndarray, peaks: np.ndarray, seq_len: int) -> np.ndarray:
    """Beat i = the R-R window (R_i, R_(i+1)) moved back by LEAD_FRACTION of the interval, resampled to
    ``seq_len``: ``(len(peaks) - 1, seq_len)``. ``signal`` must have the dominant QRS deflection negative."""
    peaks = np.asarray(peaks, dtype=np.float64)
    if len(peaks) < 2:
        return np.empty((0, seq_len))
    rr = np.diff(peaks)
    start = peaks[:-1] - LEAD_FRACTION * rr
    positions = start[:, None] + np.linspace(0.0, 1.0, seq_len)[None, :] * rr[:, None]
    return np.interp(positions.ravel(), np.arange(len(signal)), signal).reshape(positions.shape)


def cut_fixed(signal: np.ndarray, peaks: np.ndarray, fs: float, window: Window) -> np.ndarray:
    """Fixed spans around each peak, resampled: ``(len(peaks), window.length)``; the dominant QRS
    deflection negative, as for :func:`cut_beats`, not normalised (a device's amplitude scale does that)."""
    peaks = np.asarray(peaks, dtype=np.float64)
    grid = np.linspace(-window.before_s * fs, window.after_s * fs, window.seq_len)
    step = grid[1] - grid[0]
    grid = grid[0] + step * np.arange(-window.margin, window.seq_len + window.margin)
    positions = peaks[:, None] + grid[None, :]
    return np.interp(positions.ravel(), np.arange(len(signal)), signal).reshape(positions.shape)


# --- the stream ----------------------------------------------------------------------------------
def continues(track: Track | None, strip: Strip) -> bool:
    """Whether ``strip`` is the next piece of the track's run: next seq, same rate, starting where it ended."""
    if track is None or not track.open or strip.seq != track.next_seq or strip.fs != track.fs:
        return False
    return abs(strip.ts - track.next_ts) <= max(MAX_TS_JUMP_S, 2.0 / strip.fs)


def push(track: Track | None, strip: Strip, window: Window) -> StripResult:
    """Process the next strip of a device; returns its new track and every beat this strip completed.

    A strip that does not continue the track (first strip, missing or late seq, a ts jump, another rate)
    first closes the old run: its deferred peaks are confirmed and its last beat, which has no next R peak,
    comes out "incomplete". Deterministic: the same track and strip give the same beats (a redelivered
    strip, processed from the track it was first processed from, yields exactly the same events).
    """
    contiguous = continues(track, strip)
    closing = [] if contiguous or track is None or not track.open else _close(track, window)
    if contiguous:
        assert track is not None
        context = track.tail
        start = track.end
    else:
        # A gap does not turn the lead over: the new run keeps the device's polarity and its average (before,
        # a run after a lost strip relearnt it from one strip, and an ambiguous one marked the rest reversed).
        polarity, average = (track.polarity, track.polarity_average) if track is not None else (1, None)
        track = Track(strip.fs, strip.seq, strip.ts, strip.ts, 0, np.empty(0), strip.seq, 0, polarity, average)
        context, start = np.empty(0), 0
    raw = np.asarray(strip.samples, dtype=np.float64)
    segment = np.concatenate([context, raw])
    offset = start - len(context)  # run index of segment[0]
    cleaned = clean(segment, strip.fs) if len(segment) >= 16 else segment - segment.mean()
    pad = LEAD_PAD_S if not len(context) else 0.0
    detected = detect(track.polarity * cleaned, strip.fs, pad)
    polarity, average, score = _polarity(track, cleaned, detected, strip.fs, len(raw))
    if polarity != track.polarity:  # the lead turned: P and T waves are told from QRS by which way they point
        detected = detect(polarity * cleaned, strip.fs, pad)
    found = _accepted_peaks(polarity * cleaned, detected, strip.fs, no_context=not len(context))
    own = found[found >= len(context)] - len(context)
    indices = quality_indices(cleaned, found, strip.fs)
    own_indices = Indices(*(v[found >= len(context)] for v in indices.__dict__.values()))
    verdict = strip_quality(raw, cleaned[len(context) :], strip.fs, own, own_indices)
    if verdict in ("leads_off", "saturated") or (verdict != "ok" and track.polarity_average is None):
        # No ECG in it, or a device's first strips of noise (a watch put on before its electrodes touch):
        # they say nothing about the lead's polarity, which was learnt from them and then marked the clean ECG
        # that followed reversed. Noisy strips later on still count: a lead turned over often reads as noisy
        # at first, and skipping those kept a reversed lead unjudged for minutes.
        polarity, average = track.polarity, track.polarity_average
    elif polarity * score < -REVERSED_SCORE:
        # The lead looks upside down against the polarity the device's beats are cut with, and the average
        # has not turned yet (a lead reversed or a watch worn the other way): beats cut now would be
        # inverted, so none is judged until it turns (about a minute).
        verdict = "reversed"
    guard = round(GUARD_S * strip.fs)
    lower = (start - guard) if contiguous else start
    upper = start + len(raw) - guard
    absolute = found + offset
    accepted = absolute[(absolute >= lower) & (absolute < upper)]
    deferred = [int(p) for p in absolute[absolute >= upper]]
    new = replace(
        track,
        next_seq=strip.seq + 1,
        next_ts=strip.ts + len(raw) / strip.fs,
        end=start + len(raw),
        tail=segment[-round(CONTEXT_S * strip.fs) :].copy(),
        strip_seq=strip.seq,
        strip_start=start,
        polarity=polarity,
        polarity_average=average,
        deferred=deferred,
    )
    beat_quality_by_peak = dict(zip((found + offset).tolist(), beat_quality(indices), strict=True))
    peaks = [_origin(track, new, int(p), contiguous) for p in accepted]
    beats = _complete(new, peaks, -polarity * cleaned, offset, window, beat_quality_by_peak, verdict)
    return StripResult(new, closing + beats, verdict, contiguous)


def _polarity(track: Track, cleaned: np.ndarray, peaks: np.ndarray, fs: float, n_new: int) -> tuple[int, float, float]:
    """The device's lead polarity after this strip (its score folded into an exponential average), the
    average, and the strip's own score."""
    score = polarity_score(cleaned, peaks, fs)
    if track.polarity_average is None:
        return (1 if score >= 0 else -1), score, score
    weight = 1.0 - np.exp(-n_new / fs / POLARITY_TAU_S)
    average = (1 - weight) * track.polarity_average + weight * score
    polarity = track.polarity
    if polarity > 0 and average < -POLARITY_BAND:
        polarity = -1
    elif polarity < 0 and average > POLARITY_BAND:
        polarity = 1
    return polarity, float(average), score


def _accepted_peaks(cleaned: np.ndarray, peaks: np.ndarray, fs: float, no_context: bool) -> np.ndarray:
    """Detected peaks that pass the amplitude gate (and, without context, the start gate)."""
    if len(peaks) > 2 and no_context:
        h = round(QRS_HALF_S * fs)
        slope = np.abs(np.diff(cleaned, prepend=cleaned[0]))
        steepest = np.array([slope[max(0, p - h) : p + h + 1].max() for p in peaks])
        peaks = peaks[(peaks >= round(0.5 * fs)) | (steepest >= START_GATE * np.median(steepest))]
    if len(peaks) > 2:
        amplitude = qrs_amplitudes(cleaned, peaks, fs)
        peaks = peaks[amplitude >= AMPLITUDE_GATE * np.median(amplitude)]
    return peaks


def _origin(old: Track, new: Track, index: int, contiguous: bool) -> Peak:
    if contiguous and index < new.strip_start:  # deferred from the previous strip
        return Peak(index, old.strip_seq, index - old.strip_start)
    return Peak(index, new.strip_seq, index - new.strip_start)


def _complete(
    track: Track,
    peaks: list[Peak],
    signal: np.ndarray,
    offset: int,
    window: Window,
    quality: dict[int, str],
    verdict: str,
) -> list[FoundBeat]:
    """Cut every beat whose next R peak is now known; the last peak waits in ``track.last_peak``."""
    refractory = round(REFRACTORY_S * track.fs)
    chain = [track.last_peak] if track.last_peak is not None else []
    for peak in peaks:
        if not chain or peak.index - chain[-1].index >= refractory:
            chain.append(peak)
    beats = []
    if len(chain) >= 2:
        positions = np.array([p.index - offset for p in chain])
        if window.kind == "fixed":
            windows = cut_fixed(signal, positions[:-1], track.fs, window)
        else:
            windows = cut_beats(signal, positions, window.seq_len)
        for i, peak in enumerate(chain[:-1]):
            rr = track.last_rr_s if i == 0 else (peak.index - chain[i - 1].index) / track.fs
            rr_next = (chain[i + 1].index - peak.index) / track.fs
            own = quality.get(peak.index, "ok")
            beats.append(_beat(track, peak, rr, windows[i], verdict if verdict != "ok" else own, rr_next))
        track.last_rr_s = (chain[-1].index - chain[-2].index) / track.fs
    track.last_peak = chain[-1] if chain else None
    return beats


def _beat(
    track: Track, peak: Peak, rr: float | None, window: np.ndarray | None, quality: str, rr_next: float | None = None
) -> FoundBeat:
    t = track.run_ts + peak.index / track.fs
    return FoundBeat(peak.strip_seq, peak.sample, t, rr, window, quality, rr_next)


def close(track: Track, window: Window) -> tuple[Track, list[FoundBeat]]:
    """End the track's run now (the device went quiet): its last beats come out, the next strip starts anew.

    Without it a stream's last beats (those in the final strip's guard span, and the one waiting for its next
    R peak) were never published: two beats of every record streamed to its end, 0.1% of them.
    """
    if not track.open:
        return track, []
    return replace(track, open=False, deferred=[], last_peak=None, last_rr_s=None), _close(track, window)


def _close(track: Track, window: Window) -> list[FoundBeat]:
    """End a run: confirm its deferred peaks from the tail, and let its last beat out as "incomplete"."""
    cleaned = clean(track.tail, track.fs) if len(track.tail) >= 16 else track.tail
    offset = track.end - len(track.tail)
    peaks = [Peak(p, track.strip_seq, p - track.strip_start) for p in track.deferred]
    closing = replace(track, deferred=[])
    beats = _complete(closing, peaks, -track.polarity * cleaned, offset, window, {}, "ok")
    if closing.last_peak is not None:
        beats.append(_beat(closing, closing.last_peak, closing.last_rr_s, None, "incomplete"))
    return beats
