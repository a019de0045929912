"""respsep: breathing signal and breathing rate from ECG and PPG, without a respiration sensor.

Public surface (imported lazily, so ``import resp_sep`` stays light)
--------------------------------------------------------------------
extract          : respiration, rates per window and breaths from ECG/PPG arrays or an MNE Raw (:mod:`resp_sep.api`).
extract_file     : the same from an EDF/EDF+/BDF/WFDB file; ``.save(...)`` writes what ``respsep extract`` writes.
extract_batch    : many recordings (files, folders, sample lists, job-array shards) with a summary table (:mod:`resp_sep.batch`).
Extraction       : the result: ``.waveform``, ``.rates``, ``.breaths`` (pandas DataFrames), ``.info``, ``.save()``.
ExtractOptions   : algorithm settings and their defaults (:mod:`resp_sep.pipeline`).
OutputOptions    : output settings (waveform rate, rate window, format) (:mod:`resp_sep.outputs`).
read_recording   : open an EDF/EDF+/BDF/WFDB file lazily (:mod:`resp_sep.io`).
read_sample_list : a Luna-style sample list (``ID<TAB>PATH``) (:mod:`resp_sep.batch`).
detect_roles     : map channel labels to ``ecg``/``ppg``/``nasal``/``thor``/``abdo`` (:mod:`resp_sep.channels`).
load_signal      : one channel, checked and resampled to 200 Hz (:mod:`resp_sep.preprocess`).
breathing_rate   : breaths/min per window of any respiration waveform (:mod:`resp_sep.rate`).
evaluate_recording : score respsep and the heuristics against references (:mod:`resp_sep.evaluate`).
Separator        : a trained model; ``Separator.from_checkpoint(...).extract(x, fs)`` (:mod:`resp_sep.separate`).
RespSepError     : every error a user can cause (one-line message, ``.exit_code``; :mod:`resp_sep.errors`).
"""

__version__ = "0.1.0"

from resp_sep.errors import InputError, ModelError, OutputError, RespSepError, UsageError  # noqa: E402

_LAZY = {
    "extract": "resp_sep.api",
    "extract_file": "resp_sep.api",
    "Extraction": "resp_sep.api",
    "extract_batch": "resp_sep.batch",
    "read_sample_list": "resp_sep.batch",
    "ExtractOptions": "resp_sep.pipeline",
    "OutputOptions": "resp_sep.outputs",
    "read_recording": "resp_sep.io",
    "detect_roles": "resp_sep.channels",
    "load_signal": "resp_sep.preprocess",
    "breathing_rate": "resp_sep.rate",
    "evaluate_recording": "resp_sep.evaluate",
    "Separator": "resp_sep.separate",
}

__all__ = ["__version__", "RespSepError", "InputError", "ModelError", "OutputError", "UsageError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'resp_sep' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
