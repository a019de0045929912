"""respsep: breathing signal and breathing rate from ECG and PPG, without a respiration sensor.

Public surface (imported lazily, so ``import resp_sep`` stays light)
--------------------------------------------------------------------
read_recording   : open an EDF/EDF+/BDF/WFDB file lazily (:mod:`resp_sep.io`).
detect_roles     : map channel labels to ``ecg``/``ppg``/``nasal``/``thor``/``abdo`` (:mod:`resp_sep.channels`).
load_signal      : one channel, checked and resampled to 200 Hz (:mod:`resp_sep.preprocess`).
Separator        : a trained model; ``Separator.from_checkpoint(...).extract(x, fs)`` (:mod:`resp_sep.separate`).
breathing_rate   : breaths/min per 60-s window of a respiration waveform (:mod:`resp_sep.rate`).
evaluate_recording : score respsep and the heuristics against references (:mod:`resp_sep.evaluate`).
"""

__version__ = "0.1.0"

from resp_sep.errors import RespSepError  # noqa: E402

_LAZY = {
    "read_recording": "resp_sep.io",
    "detect_roles": "resp_sep.channels",
    "load_signal": "resp_sep.preprocess",
    "Separator": "resp_sep.separate",
    "breathing_rate": "resp_sep.rate",
    "evaluate_recording": "resp_sep.evaluate",
}

__all__ = ["__version__", "RespSepError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'resp_sep' has no attribute {name!r}")
