"""A synthetic single-lead ECG task, generated offline, shaped like the PhysioNet/CinC 2017 challenge.

NAS-Bench-360's ECG task classifies 1000-sample windows (300 Hz) of AliveCor recordings into normal rhythm,
atrial fibrillation (AF), other rhythm and too noisy, scored by 1 - macro F1. Here each window is drawn from
a simple physiological model instead:

* Beats are sums of five Gaussians (P, Q, R, S, T waves, as in McSharry et al., IEEE TBME 2003) placed at
  R-peak times from an RR-interval process; the T wave moves with the RR interval (Bazett). Each window gets
  its own amplitudes, widths, PR and QT intervals, and starts at a random point of the cycle.
* normal (0): sinus rhythm with respiratory sinus arrhythmia and beat-to-beat jitter.
* AF (1): irregularly irregular RR (log-normal, independent intervals), no P waves, fibrillatory f-waves
  (4-9 Hz, drifting frequency).
* other (2): one of bradycardia, tachycardia, premature ventricular contractions (wide, P-less, with a
  compensatory pause), wide QRS (bundle-branch-block-like, notched) or first-degree AV block (long PR).
* noisy (3): any of the rhythms above under heavy muscle noise, motion artefacts, electrode pops or lead-off.
* Every window also gets baseline wander, mains hum (50 or 60 Hz) and muscle (EMG) noise, and a lead
  reversal now and then; then it is z-scored. Class priors are those of CinC 2017: 59 / 9 / 28 / 4 %.

``difficulty`` in [0, 1] moves the classes together (:func:`knobs` lists every setting it moves). A first
version without it was too easy (a small CNN reached macro-F1 0.97). As difficulty rises: noise in every class
grows, while the noisy class's artefacts get weaker and cover less of the window; normal heart rates spread
into the brady/tachy borders; sinus rhythm gets more variable and AF more regular, with fainter f-waves;
P waves get fainter; and "other" windows are more often subtle (a borderline rate, a single PVC, a slightly
wide QRS, a slightly long PR). Near 1 the classes overlap so much that no model separates them well.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch

from ._common import cached_arrays, check_float, check_int, check_seed
from .base import Task, TaskDefaults, register, tensor_dataset

__all__ = ["ecg_synth", "synth_ecg", "knobs", "EcgKnobs", "EcgWindows", "CLASSES", "PRIORS", "OTHER_KINDS"]

CLASSES = ("normal", "af", "other", "noisy")
PRIORS = (0.59, 0.09, 0.28, 0.04)  # CinC 2017 class shares
OTHER_KINDS = ("brady", "tachy", "pvc", "wide_qrs", "long_pr")
_GENERATOR_VERSION = 2  # bump when the generator changes, so that old caches are not reused


@dataclass(frozen=True)
class EcgKnobs:
    """What ``difficulty`` sets: each field moves linearly from its easy value (0) to its hard value (1)."""

    emg_max: float  # mV: upper end of the muscle-noise standard deviation in every window
    wander_max: float  # mV: upper end of the baseline wander amplitude
    mains_max: float  # mV: upper end of the mains hum amplitude
    p_wave: float  # scale of the P-wave amplitude (0.05-0.25 mV at 1)
    normal_hr_lo: float  # bpm: normal heart rates span [lo, hi]; brady < 58 and tachy > 100 bpm
    normal_hr_hi: float
    sinus_rsa_max: float  # upper end of the respiratory RR modulation of sinus rhythm (fraction of RR)
    sinus_jitter: float  # beat-to-beat RR noise of sinus rhythm (fraction of RR)
    af_irregularity: float  # scale of the AF log-RR standard deviation (0.06-0.25 at 1)
    f_wave: float  # scale of the AF f-wave amplitude (0.01-0.12 mV at 1)
    subtle_other: float  # probability that an "other" window shows only a subtle sign
    artefact_strength: float  # scale of the noisy class's artefacts
    artefact_cover_min: float  # smallest fraction of a noisy window that muscle noise and motion cover
    reversal: float  # probability of reversed electrodes (an inverted trace)


_EASY = EcgKnobs(emg_max=0.02, wander_max=0.05, mains_max=0.01, p_wave=1.0, normal_hr_lo=60.0,
                 normal_hr_hi=100.0, sinus_rsa_max=0.03, sinus_jitter=0.01, af_irregularity=1.0, f_wave=1.0,
                 subtle_other=0.1, artefact_strength=1.0, artefact_cover_min=1.0, reversal=0.05)
_HARD = EcgKnobs(emg_max=0.25, wander_max=0.6, mains_max=0.1, p_wave=0.4, normal_hr_lo=45.0,
                 normal_hr_hi=115.0, sinus_rsa_max=0.10, sinus_jitter=0.04, af_irregularity=0.5, f_wave=0.2,
                 subtle_other=0.95, artefact_strength=0.25, artefact_cover_min=0.2, reversal=0.3)


def knobs(difficulty: float) -> EcgKnobs:
    """The generator settings at ``difficulty`` in [0, 1] (linear between the easy and the hard end)."""
    d = check_float("difficulty", difficulty, 0.0, 1.0)
    return EcgKnobs(**{f.name: (1 - d) * getattr(_EASY, f.name) + d * getattr(_HARD, f.name)
                       for f in fields(EcgKnobs)})


@dataclass
class EcgWindows:
    """Windows from :func:`synth_ecg`.

    Attributes:
        x: (N, length) float32, each window z-scored.
        y: (N,) int64 class indices (0 normal, 1 AF, 2 other, 3 noisy).
        beat_times: N arrays of R-peak times in seconds from the window's start (beats inside the window).
        rhythm: (N,) int64 the underlying rhythm (equal to y except in noisy windows).
        kind: N strings: the "other" subtype (one of OTHER_KINDS) or the class name; "subtle_" marks subtle ones.
    """

    x: np.ndarray
    y: np.ndarray
    beat_times: List[np.ndarray]
    rhythm: np.ndarray
    kind: List[str]


# ----------------------------------------------------------------------------------------------------------
# one window


def _rr_sinus(rng: np.random.Generator, hr: float, k: EcgKnobs, n: int) -> np.ndarray:
    """n sinus RR intervals (s): a respiratory oscillation plus beat-to-beat jitter."""
    rr = 60.0 / hr
    rsa = rng.uniform(0.0, k.sinus_rsa_max)
    beat = np.arange(n)
    resp = np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * rr * beat + rng.uniform(0, 2 * np.pi))
    return rr * (1.0 + rsa * resp + k.sinus_jitter * rng.standard_normal(n))


def _rr_af(rng: np.random.Generator, k: EcgKnobs, n: int) -> np.ndarray:
    """n AF RR intervals (s): independent log-normal intervals around a rate of 60-150 bpm."""
    rr = 60.0 / rng.uniform(60.0, 150.0)
    sigma = rng.uniform(0.06, 0.25) * k.af_irregularity
    return np.clip(rr * np.exp(sigma * rng.standard_normal(n) - sigma ** 2 / 2), 0.3, 2.0)


def _rhythm_plan(rng: np.random.Generator, rhythm: int, k: EcgKnobs, duration: float
                 ) -> Tuple[np.ndarray, np.ndarray, Dict[str, float], str]:
    """R-peak times (s, from 2 s before the window to 1 s after it), a PVC flag per beat, morphology
    changes and the subtype name."""
    n = int((duration + 3.0) / 0.3) + 2  # enough beats even at 200 bpm
    subtle = rng.random() < k.subtle_other
    kind, morph = CLASSES[rhythm], {}
    if rhythm == 1:
        rr = _rr_af(rng, k, n)
    elif rhythm == 0:
        rr = _rr_sinus(rng, rng.uniform(k.normal_hr_lo, k.normal_hr_hi), k, n)
    else:
        kind = OTHER_KINDS[rng.integers(len(OTHER_KINDS))]
        hr = rng.uniform(60.0, 95.0)
        # Subtle rates sit at the border, where a hard setting's normal rates reach too.
        if kind == "brady":
            hr = rng.uniform(48.0, 58.0) if subtle else rng.uniform(35.0, 50.0)
        elif kind == "tachy":
            hr = rng.uniform(100.0, 112.0) if subtle else rng.uniform(110.0, 160.0)
        elif kind == "wide_qrs":
            morph["qrs_width"] = rng.uniform(1.4, 1.8) if subtle else rng.uniform(2.2, 3.0)
            morph["notch"] = float(not subtle and rng.random() < 0.6)
        elif kind == "long_pr":
            morph["pr"] = rng.uniform(0.22, 0.26) if subtle else rng.uniform(0.28, 0.36)
        rr = _rr_sinus(rng, hr, k, n)
        kind = ("subtle_" if subtle else "") + kind
    start = -2.0 - rng.uniform(0.0, rr[0])
    times = start + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    pvc = np.zeros(n, dtype=bool)
    if kind.endswith("pvc"):
        inside = np.flatnonzero((times > 0.3) & (times < duration - 0.3))
        if subtle or len(inside) < 2:
            chosen = rng.choice(inside, size=1) if len(inside) else inside
        else:
            chosen = inside[rng.random(len(inside)) < 0.35]
            chosen = chosen if len(chosen) else rng.choice(inside, size=1)
        coupling = rng.uniform(0.55, 0.75)
        for i in chosen:
            # Premature beat, then a full compensatory pause: the next sinus beat keeps its own time.
            pvc[i] = True
            times[i] = times[i - 1] + coupling * (times[i] - times[i - 1])
        morph["pvc_width"] = rng.uniform(1.3, 1.8) if subtle else rng.uniform(2.5, 3.5)
        morph["pvc_amp"] = rng.uniform(0.9, 1.2) if subtle else rng.uniform(1.3, 1.8)
    keep = times < duration + 1.0
    return times[keep], pvc[keep], morph, kind


def _gaussians(n: int, fs: float, waves: np.ndarray) -> np.ndarray:
    """Sum of Gaussian bumps sampled at i / fs, i < n; waves (W, 3) rows of (amplitude, centre s, width s).

    Each bump is evaluated only within 6 widths of its centre (beyond that it is below 2e-8 of its peak),
    which is what keeps the generator fast; the pieces are summed into (n,) with a bincount.
    """
    a, c, w = waves[:, 0:1], waves[:, 1:2], waves[:, 2:3]
    half = int(np.ceil(6 * w.max() * fs))
    idx = np.round(c * fs).astype(np.int64) + np.arange(-half, half + 1)  # (W, 2 * half + 1)
    vals = a * np.exp(-0.5 * ((idx / fs - c) / w) ** 2)
    ok = (idx >= 0) & (idx < n)
    return np.bincount(idx[ok], weights=vals[ok], minlength=n)


def _beats(rng: np.random.Generator, n: int, fs: float, times: np.ndarray, pvc: np.ndarray, af: bool,
           morph: Dict[str, float], k: EcgKnobs) -> np.ndarray:
    """The clean ECG (mV): five Gaussians per beat (P, Q, R, S, T), PVCs and morphology changes applied."""
    r_amp = rng.uniform(0.5, 1.8)
    p_amp = 0.0 if af else rng.uniform(0.05, 0.25) * k.p_wave
    q_amp, s_amp, t_amp = -rng.uniform(0.0, 0.15), -rng.uniform(0.05, 0.4), rng.uniform(0.1, 0.4)
    pr = morph.get("pr", rng.uniform(0.12, 0.20))
    qtc = rng.uniform(0.36, 0.44)
    wq = morph.get("qrs_width", 1.0)
    widths = np.array([0.025, 0.008, 0.010, 0.010, 0.05]) * rng.uniform(0.8, 1.2, 5)
    rr_prev = np.diff(times, prepend=times[0] - (times[1] - times[0]))
    waves = []
    for b, (tk, rr) in enumerate(zip(times, rr_prev)):
        jit = rng.uniform(0.95, 1.05)
        t_off = qtc * np.sqrt(max(rr, 0.3)) - 0.1
        if pvc[b]:
            wp, sign = morph["pvc_width"], (1.0 if rng.random() < 0.5 else -1.0)
            amp = morph["pvc_amp"] * r_amp
            waves += [(sign * amp, tk, wp * widths[2]),
                      (-sign * t_amp * amp, tk + t_off + 0.05, 1.3 * widths[4])]
            continue
        waves += [(p_amp * jit, tk - pr, widths[0]),
                  (q_amp * r_amp * jit, tk - 0.03 * wq, widths[1] * wq),
                  (r_amp * jit, tk, widths[2] * wq),
                  (s_amp * r_amp * jit, tk + 0.03 * wq, widths[3] * wq),
                  (t_amp * r_amp * jit, tk + t_off, widths[4])]
        if morph.get("notch"):
            waves.append((0.5 * r_amp, tk + 0.02 * wq, widths[2] * wq * 0.7))
    return _gaussians(n, fs, np.asarray(waves))


def _f_waves(rng: np.random.Generator, t: np.ndarray, k: EcgKnobs) -> np.ndarray:
    """Fibrillatory waves: 4-9 Hz with drifting frequency and amplitude."""
    amp = rng.uniform(0.01, 0.12) * k.f_wave
    f0 = rng.uniform(4.0, 9.0)
    drift = 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0 + drift) * (t[1] - t[0]) + rng.uniform(0, 2 * np.pi)
    envelope = 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t + rng.uniform(0, 2 * np.pi))
    return amp * envelope * (np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi)))


def _noise(rng: np.random.Generator, t: np.ndarray, fs: float, k: EcgKnobs) -> np.ndarray:
    """Baseline wander + mains hum + EMG (mV)."""
    out = np.zeros_like(t)
    wander = rng.uniform(0.0, k.wander_max)
    for share in (0.7, 0.3):
        out += share * wander * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi))
    mains = [f for f in (50.0, 60.0) if f < fs / 2]
    if mains:
        f = mains[rng.integers(len(mains))]
        out += rng.uniform(0.0, k.mains_max) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out + rng.uniform(0.005, k.emg_max) * rng.standard_normal(len(t))


def _artefacts(rng: np.random.Generator, sig: np.ndarray, t: np.ndarray, fs: float, k: EcgKnobs) -> np.ndarray:
    """What makes a recording "too noisy": 1-3 of strong EMG, motion, electrode pops and lead-off."""
    n, s = len(t), k.artefact_strength
    sig = sig.copy()

    def stretch() -> slice:
        # A recording's noise need not fill the window it is cut into.
        m = int(np.ceil(rng.uniform(k.artefact_cover_min, 1.0) * n))
        a = int(rng.integers(0, n - m + 1))
        return slice(a, a + m)

    for art in rng.choice(4, size=rng.integers(1, 4), replace=False):
        if art == 0:  # muscle noise
            span = stretch()
            sig[span] += rng.uniform(0.15, 0.6) * s * rng.standard_normal(span.stop - span.start)
        elif art == 1:  # motion: a smoothed random walk of large amplitude
            span = stretch()
            walk = np.cumsum(rng.standard_normal(span.stop - span.start))
            w = max(int(0.1 * fs), 1)
            walk = np.convolve(walk - walk.mean(), np.ones(w) / w, mode="same")
            sig[span] += rng.uniform(0.5, 2.0) * s * walk / (np.abs(walk).max() + 1e-9)
        elif art == 2:  # electrode pops: steps that decay away
            for t0 in rng.uniform(0, t[-1], rng.integers(1, 5)):
                step = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 3.0) * s
                sig += np.where(t >= t0, step * np.exp(-(t - t0) / rng.uniform(0.05, 0.5)), 0.0)
        else:  # lead-off: a flat, slightly noisy stretch
            m = int(rng.uniform(0.15, 0.5) * s * n) + 1
            a = int(rng.integers(0, n - m + 1))
            sig[a:a + m] = rng.uniform(-1.0, 1.0) + 0.005 * rng.standard_normal(m)
    return sig


def synth_ecg(labels: Sequence[int], length: int = 1000, fs: float = 300, difficulty: float = 0.5,
              seed: Union[int, np.random.Generator] = 0) -> EcgWindows:
    """Synthesize one ECG window per requested class label.

    Args:
        labels: N class indices in 0..3 (normal, AF, other, noisy).
        length: samples per window; the window lasts length / fs seconds (at least 2 s).
        fs: sampling rate in Hz.
        difficulty: in [0, 1]; see :func:`knobs` for what it sets.
        seed: an integer seed or a numpy Generator.

    Returns:
        EcgWindows with x (N, length) float32 z-scored windows and the R-peak times of each window.

    Example:
        >>> w = synth_ecg([0, 1, 2, 3], difficulty=0.2)
        >>> w.x.shape, [len(b) for b in w.beat_times]
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or ((labels < 0) | (labels > 3)).any():
        raise ValueError(f"labels={labels!r}; accepted: a 1-D sequence of integers in 0..3 ({', '.join(CLASSES)})")
    fs = check_float("fs", fs, 100.0, 5000.0)
    length = check_int("length", length, int(np.ceil(2 * fs)), 1_000_000)
    k = knobs(difficulty)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(check_seed(seed))
    t = np.arange(length) / fs
    duration = length / fs
    x = np.empty((len(labels), length), dtype=np.float32)
    beats, rhythms, kinds = [], np.empty(len(labels), dtype=np.int64), []
    noise_rhythm_p = np.asarray(PRIORS[:3]) / sum(PRIORS[:3])
    for i, label in enumerate(labels):
        rhythm = int(label) if label != 3 else int(rng.choice(3, p=noise_rhythm_p))
        times, pvc, morph, kind = _rhythm_plan(rng, rhythm, k, duration)
        sig = _beats(rng, length, fs, times, pvc, rhythm == 1, morph, k)
        if rhythm == 1:
            sig += _f_waves(rng, t, k)
        sig += _noise(rng, t, fs, k)
        if label == 3:
            sig = _artefacts(rng, sig, t, fs, k)
            kind = "noisy_" + kind
        if rng.random() < k.reversal:
            sig = -sig
        x[i] = (sig - sig.mean()) / (sig.std() + 1e-8)
        beats.append(times[(times >= 0) & (times < duration)])
        rhythms[i] = rhythm
        kinds.append(kind)
    return EcgWindows(x=x, y=labels.astype(np.int64), beat_times=beats, rhythm=rhythms, kind=kinds)


@register("ecg_synth")
def ecg_synth(n_train: int = 10000, n_val: int = 2000, n_test: int = 2000, length: int = 1000, fs: int = 300,
              difficulty: float = 0.5, seed: int = 0) -> Task:
    """Synthetic single-lead ECG rhythm classification (CinC 2017 / NAS-Bench-360 ECG in miniature).

    Args:
        n_train, n_val, n_test: split sizes; each split has its own random stream.
        length: samples per window (NAS-Bench-360: 1000); at least 2 s.
        fs: sampling rate in Hz (CinC 2017: 300).
        difficulty: in [0, 1]; 0 is easy, 1 makes the classes overlap strongly (see the module docstring).
        seed: the data seed.

    Returns:
        Task "ecg_synth", kind "classification": x (1, length) float32, y int64 in 0..3
        (normal, AF, other, noisy); metric 1 - macro F1.
    """
    n_train = check_int("n_train", n_train, 1)
    n_val = check_int("n_val", n_val, 1)
    n_test = check_int("n_test", n_test, 1)
    fs = check_int("fs", fs, 100, 5000)
    length = check_int("length", length, 2 * fs, 1_000_000)
    difficulty = check_float("difficulty", difficulty, 0.0, 1.0)
    seed = check_seed(seed)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    params = {"version": _GENERATOR_VERSION, "sizes": sizes, "length": length, "fs": fs,
              "difficulty": difficulty, "seed": seed}

    def make() -> Dict[str, np.ndarray]:
        out = {}
        for k, (split, n) in enumerate(sizes.items()):
            rng = np.random.default_rng([seed, k])
            w = synth_ecg(rng.choice(4, size=n, p=PRIORS), length, fs, difficulty, rng)
            out[f"x_{split}"], out[f"y_{split}"] = w.x, w.y.astype(np.uint8)
        return out

    arrays = cached_arrays("ecg_synth", params, make)
    data = {s: tensor_dataset(torch.from_numpy(arrays[f"x_{s}"])[:, None],  # (N, 1, length)
                              torch.from_numpy(arrays[f"y_{s}"].astype(np.int64)))
            for s in sizes}
    return Task(
        name="ecg_synth", kind="classification", train=data["train"], val=data["val"], test=data["test"],
        in_shape=(1, length), num_outputs=4, metric_name="1-macro_f1",
        defaults=TaskDefaults(backbone="resnet1d", kernel_sizes=(3, 7, 11, 15, 19), dilations=(1, 3, 7, 15)),
        info={
            "source": "synthetic single-lead ECG (generated locally; a Gaussian-wave beat model with an RR "
                      "process, CinC 2017-like classes)",
            "classes": list(CLASSES), "priors": list(PRIORS), "sizes": dict(sizes), "fs": fs,
            "seconds": length / fs, "difficulty": difficulty, "seed": seed,
            "credit": "Beat model after McSharry et al., IEEE TBME 50(3):289-294 (2003); classes after the "
                      "PhysioNet/Computing in Cardiology Challenge 2017 (CinC 2017; Clifford et al., "
                      "Computing in Cardiology 44, 2017), as used in NAS-Bench-360.",
            "reference": "macro-F1 at difficulty 0.5 (1000 samples, 300 Hz): logistic regression on spectral "
                         "and autocorrelation features about 0.65 (0.84 at difficulty 0, 0.50 at 1); a six-layer "
                         "CNN trained on 4000 windows for 10 epochs about 0.80",
        },
    )
