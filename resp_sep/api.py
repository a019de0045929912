"""The Python API: one call on arrays, a file or an MNE ``Raw``, returning tables (pandas DataFrames).

>>> import resp_sep
>>> res = resp_sep.extract(ecg, ecg_fs=256, ppg=ppg, ppg_fs=128, window_s=30)   # doctest: +SKIP
>>> res.rates.head()          # one row per 30-s epoch from 0 s: start_s, end_s, breaths_per_min, ...
>>> res.breaths               # one row per breath: onset_s, end_s, duration_s, amplitude, confidence
>>> res.waveform              # time_s, resp at 25 Hz
>>> res = resp_sep.extract_file("night.edf", window_s=30)
>>> res.save("resp.csv", rates="rates.csv", breaths="breaths.csv")

Arrays, files and MNE objects run through the same pipeline call as ``respsep extract``
(:func:`resp_sep.pipeline.respiration`, tables from :mod:`resp_sep.outputs`), so the API and the
CLI give the same numbers for the same samples. Errors are :class:`~resp_sep.errors.RespSepError`
subclasses with a one-line message: ``UsageError`` (a bad argument), ``InputError`` (unusable
signal), ``ModelError`` (a separator checkpoint).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property

import numpy as np

from resp_sep.errors import InputError, UsageError
from resp_sep.outputs import BREATH_COLUMNS, RATE_COLUMNS, WAVEFORM_COLUMNS, OutputOptions, OutputPaths
from resp_sep.pipeline import ExtractOptions

_ALGO = ExtractOptions()
_OUT = OutputOptions()
#: the labels arrays get (their roles follow from them, as for a file's channels)
ECG_LABEL, PPG_LABEL = "ECG", "PPG"


class Extraction:
    """The respiration of one recording and its tables.

    Attributes
    ----------
    waveform : pandas.DataFrame
        ``time_s`` (s from the start), ``resp`` (a.u., NaN where no source was valid) at
        ``output.out_rate`` Hz.
    rates : pandas.DataFrame
        One row per ``output.window_s`` window from 0 s (:data:`resp_sep.outputs.RATE_COLUMNS`;
        ``breaths_per_min`` NaN where there is no rate, ``flag`` says why).
    breaths : pandas.DataFrame
        One row per counted breath (:data:`resp_sep.outputs.BREATH_COLUMNS`; s, a.u., 0-1).
    info : dict
        Inputs and channels used, duration, mean source weights, notes, and :meth:`summary`.
    respiration : resp_sep.pipeline.Respiration
        The 10-Hz fused waveform, the sources and the fusion's per-window weights and confidence.
    recording : resp_sep.io.Recording
    options : resp_sep.pipeline.ExtractOptions
    output : resp_sep.outputs.OutputOptions

    The numpy arrays behind the tables are ``time_s``, ``resp``, ``rate_windows`` (a
    :class:`~resp_sep.rate.RateWindows`), ``rate_rows`` and ``breath_arrays``.
    """

    def __init__(self, respiration, recording, options: ExtractOptions, output: OutputOptions):
        self.respiration = respiration
        self.recording = recording
        self.options = options
        self.output = output

    def __repr__(self) -> str:
        s = self.summary()
        bpm = "-" if s["median_bpm"] is None else f"{s['median_bpm']:.1f}"
        return (f"<Extraction {self.recording.path.name}: {self.respiration.method} on "
                f"{'+'.join(self.respiration.channels) or '-'}, {self.respiration.duration_s / 3600:.2f} h, "
                f"{s['windows_scored']}/{s['windows']} windows of {self.output.window_s:g} s scored, "
                f"median {bpm} breaths/min>")

    # arrays --------------------------------------------------------------------------------------

    @cached_property
    def resp(self) -> np.ndarray:
        """Respiration (a.u., float32) at ``output.out_rate`` Hz over the recording; NaN where no source was valid."""
        from resp_sep.outputs import at_rate

        r = self.respiration
        n = max(1, int(round(r.duration_s * self.output.out_rate)))
        return at_rate(r.wave, r.fs, self.output.out_rate, n)

    @cached_property
    def time_s(self) -> np.ndarray:
        """Times (s from the start) of :attr:`resp`."""
        return np.arange(self.resp.size) / self.output.out_rate

    @cached_property
    def _rates(self):
        from resp_sep.outputs import rate_table

        return rate_table(self.respiration, self.output.window_s)

    @property
    def rate_windows(self):
        """:class:`resp_sep.rate.RateWindows` of the respiration (breath events included)."""
        return self._rates[0]

    @property
    def rate_rows(self) -> list[dict]:
        """The rates table as a list of dicts (:func:`resp_sep.outputs.rate_table`)."""
        return self._rates[1]

    @cached_property
    def breath_arrays(self) -> dict[str, np.ndarray]:
        """The breaths table as ``{column: array}`` (:func:`resp_sep.outputs.breath_table`)."""
        from resp_sep.outputs import breath_table

        return breath_table(self.rate_windows, self.rate_rows, self.respiration, self.output.window_s)

    # tables --------------------------------------------------------------------------------------

    @property
    def waveform(self):
        import pandas as pd

        return pd.DataFrame({WAVEFORM_COLUMNS[0]: self.time_s, WAVEFORM_COLUMNS[1]: self.resp})

    @property
    def rates(self):
        import pandas as pd

        return pd.DataFrame(self.rate_rows, columns=list(RATE_COLUMNS))

    @property
    def breaths(self):
        import pandas as pd

        return pd.DataFrame({c: self.breath_arrays[c] for c in BREATH_COLUMNS})

    # reports and files ---------------------------------------------------------------------------

    def summary(self) -> dict:
        """``windows``, ``windows_scored``, ``median_bpm`` (breaths/min), ``median_confidence`` (0-1, scored
        windows), ``low_confidence`` and ``disagree`` (windows so flagged)."""
        from resp_sep.outputs import summary

        return summary(self.rate_windows, self.rate_rows)

    @property
    def info(self) -> dict:
        r = self.respiration
        fu = r.fusion
        mean_w = fu.weights.mean(axis=0) if len(fu.weights) else np.zeros(len(fu.names))
        return {"file": str(self.recording.path), "method": r.method, "signal": "+".join(r.channels),
                "channel": ", ".join(r.channels.values()), "channels": dict(r.channels),
                "duration_s": round(r.duration_s, 3), "window_s": self.output.window_s,
                "sources": {n: round(float(v), 3) for n, v in zip(fu.names, mean_w)},
                "model": ", ".join(s.name for s in r.separators.values()) or None,
                "resp_encoder": ", ".join(str(s.resp_encoder) for s in r.separators.values()) or None,
                "note": "; ".join(r.notes), "warnings": list(getattr(self.recording, "warnings", [])),
                **self.summary()}

    def save(self, out: str | None = None, *, rates: str | None = None, breaths: str | None = None,
             plot: str | None = None, fmt: str | None = None) -> dict:
        """Write the outputs all-or-nothing (temporary files renamed together when every one succeeded).

        Parameters
        ----------
        out : str, optional
            The waveform: CSV ``time_s,resp`` (empty fields where NaN), or EDF+ for a ``.edf``
            name or ``fmt="edf"`` (with breath, low-confidence, disagree and gap annotations).
        rates, breaths : str, optional
            CSV files of the rates and breaths tables.
        plot : str, optional
            An overview figure (PNG, PDF, SVG ...).
        fmt : {"csv", "edf"}, optional
            Default: from ``out``'s suffix.

        Returns
        -------
        dict
            The files written, by kind.

        Raises
        ------
        UsageError
            A bad name (two outputs naming one file, a figure type matplotlib cannot write).
        OutputError
            A file cannot be written (nothing is left behind).
        """
        from resp_sep.options import check_csv_path, check_plot_path, output_format
        from resp_sep.outputs import write_outputs
        from resp_sep.writers import check_outputs

        fmt = output_format(fmt, out)
        check_csv_path(rates, "rates")
        check_csv_path(breaths, "breaths")
        check_plot_path(plot, "plot")
        check_outputs({"out": out, "rates": rates, "breaths": breaths, "plot": plot},
                      inputs=[] if self.recording.format == "arrays" else [self.recording.path])
        res = self if fmt == self.output.fmt else self._with_output(fmt=fmt)
        return write_outputs(res, OutputPaths(out, rates, breaths, plot))

    def _with_output(self, **changes) -> Extraction:
        out = dataclasses.replace(self.output, **changes)
        new = Extraction(self.respiration, self.recording, self.options, out)
        if (out.out_rate, out.window_s) == (self.output.out_rate, self.output.window_s):
            new.__dict__.update({k: v for k, v in self.__dict__.items() if k in _CACHED})  # the same tables
        return new


#: cached tables of an Extraction (they depend on the respiration, ``out_rate`` and ``window_s``)
_CACHED = ("resp", "time_s", "_rates", "breath_arrays")


# -------------------------------------------------------------------------------------------- calls


def extract(ecg=None, ppg=None, *, ecg_fs: float | None = None, ppg_fs: float | None = None,
            method: str = _ALGO.method, signal: str = _ALGO.signal, window_s: float = _OUT.window_s,
            out_rate: float = _OUT.out_rate, channel: Mapping[str, str] | Sequence[str] | None = None,
            model: str | Sequence[str] = _ALGO.model, device: str = _ALGO.device,
            progress: Callable[[int, int], None] | None = None, separators: dict | None = None,
            **settings) -> Extraction:
    """Respiration, breaths/min per window and breaths from ECG and/or PPG samples.

    Parameters
    ----------
    ecg, ppg : array_like, shape (n_samples,), optional
        ECG and PPG in any unit (NaN marks missing samples); one or both. ``ecg`` may instead be an
        ``mne.io.BaseRaw`` (channel roles from its names: ``EKG``, ``ECG II``, ``Pleth`` ...; data
        in its physical units) or a dict ``{label: (samples, fs)}`` (roles from the labels).
    ecg_fs, ppg_fs : float
        Their sampling rates (Hz), required with arrays.
    method : str
        ``fusion`` (default: the quality-weighted fusion of the ECG and PPG sources), ``separator``,
        a source name, or a comma-separated list of sources to fuse (docs/method.md).
    signal : {"auto", "ecg", "ppg", "both"}
        Inputs used (``auto``: every one given).
    window_s : float
        Rate window (s), 10-3600; windows start at 0 s (30: AASM sleep epochs).
    out_rate : float
        Rate (Hz) of :attr:`Extraction.waveform`.
    channel : dict or list of str, optional
        Roles for a Raw or dict input: ``{"ecg": "ECG1|EKG"}`` or ``["ecg=ECG1|EKG"]`` (an alias
        list: the first label present is used).
    model : str or list of str
        Separator checkpoints (adds the separators to ``fusion``; see ``respsep extract --model``).
    device : str
        ``auto``, ``cpu`` or ``cuda`` (separators only).
    progress : callable, optional
        ``progress(done, total)`` as the recording is processed.
    separators : dict, optional
        A model cache to share across calls.
    **settings
        Other :class:`resp_sep.pipeline.ExtractOptions` fields (``hop_s``, ``batch_size``,
        ``stream``, ``block_s``, ``threads``).

    Returns
    -------
    Extraction

    Raises
    ------
    UsageError
        A bad argument (missing rate, unknown method, window out of range).
    InputError
        A signal respsep cannot use (too short, flat, no ECG/PPG role found).
    """
    rec = _recording(ecg, ppg, ecg_fs, ppg_fs, channel)
    return _extract(rec, method=method, signal=signal, window_s=window_s, out_rate=out_rate, channel=channel,
                    model=model, device=device, progress=progress, separators=separators, **settings)


def extract_file(path, *, method: str = _ALGO.method, signal: str = _ALGO.signal, window_s: float = _OUT.window_s,
                 out_rate: float = _OUT.out_rate, channel: Mapping[str, str] | Sequence[str] | None = None,
                 model: str | Sequence[str] = _ALGO.model, device: str = _ALGO.device,
                 progress: Callable[[int, int], None] | None = None, separators: dict | None = None,
                 **settings) -> Extraction:
    """Respiration, breaths/min per window and breaths of a recording file (EDF/EDF+/BDF/WFDB).

    The same as ``respsep extract FILE`` (which calls it); parameters as :func:`extract`
    (``channel`` picks the ECG/PPG channels, e.g. ``{"ecg": "ECG1|EKG"}``).

    Raises
    ------
    InputError
        Missing, unreadable or unsuitable recording (one line naming the file).
    """
    from resp_sep.io import read_recording

    return _extract(read_recording(path), method=method, signal=signal, window_s=window_s, out_rate=out_rate,
                    channel=channel, model=model, device=device, progress=progress, separators=separators,
                    **settings)


def options(method: str = _ALGO.method, signal: str = _ALGO.signal, window_s: float = _OUT.window_s,
            out_rate: float = _OUT.out_rate, channel=None, model=_ALGO.model, device: str = _ALGO.device,
            fmt: str | None = _OUT.fmt, **settings) -> tuple[ExtractOptions, OutputOptions]:
    """Checked algorithm and output settings from keyword arguments (``UsageError`` for a bad one)."""
    from resp_sep.channels import parse_overrides

    unknown = set(settings) - {f.name for f in dataclasses.fields(ExtractOptions)}
    if unknown:
        raise UsageError(f"unknown setting(s): {', '.join(sorted(unknown))} "
                         f"(ExtractOptions has {', '.join(f.name for f in dataclasses.fields(ExtractOptions))})")
    if channel is not None and not isinstance(channel, Mapping):
        channel = parse_overrides(list(channel)) if not isinstance(channel, str) else parse_overrides([channel])
    elif channel is not None:
        channel = parse_overrides([f"{k}={v}" for k, v in channel.items()])
    algo = ExtractOptions(**{**settings, "method": method, "signal": signal, "channel": channel or None,
                             "model": tuple([model] if isinstance(model, str) else model or ()), "device": device})
    return algo.check(), OutputOptions(out_rate=out_rate, window_s=window_s, fmt=fmt).check()


def _extract(rec, *, progress=None, separators=None, **kw) -> Extraction:
    from resp_sep.pipeline import respiration

    algo, out = options(**kw)
    resp = respiration(rec, algo, separators, progress)
    return Extraction(resp, rec, algo, out)


def extract_with(rec, algo: ExtractOptions, out: OutputOptions, separators: dict | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Extraction:
    """:func:`extract_file` with settings already checked (a Recording or a path): the batch runner's call."""
    from resp_sep.io import Recording, read_recording
    from resp_sep.pipeline import respiration

    rec = rec if isinstance(rec, Recording) else read_recording(rec)
    return Extraction(respiration(rec, algo, separators, progress), rec, algo, out)


#: :func:`compare_methods` presets: the default fusion set without and with the separators
FUSION, FUSION_SEPARATOR = "fusion", "fusion+separator"


def compare_methods(rec, methods: Mapping[str, str], *, singles: bool = False, signal: str = _ALGO.signal,
                    channel=None, model=_ALGO.model, device: str = _ALGO.device,
                    separators: dict | None = None, fusions: dict | None = None) -> tuple[dict, str]:
    """Respiration waveforms of one recording by several methods, every source computed once.

    For comparisons (``respsep eval --baselines``, docs/results.md): every source of the selected
    inputs runs once (the separators too) and each method is the fusion of its own sources, as
    :func:`extract` fuses them.

    Parameters
    ----------
    rec : Recording or path
    methods : dict
        ``label -> method``: ``"fusion"`` (the default set, without separators), ``"fusion+separator"``
        (with the separators of the selected inputs), or any other ``method`` of :func:`extract`.
    singles : bool
        Also every single source, labelled by its name.
    signal, channel, model, device, separators
        As for :func:`extract` (``model``: the separator checkpoints).
    fusions : dict, optional
        Filled with ``label -> FusionResult`` (:func:`resp_sep.fusion.fuse`: per-window confidence and
        flags) for every method that ran.

    Returns
    -------
    waves : dict
        ``label -> (waveform, fs)`` (Hz) for the methods that could run, in the order asked.
    inputs : str
        The inputs used, e.g. ``ecg+ppg``.
    """
    from resp_sep.fusion import fuse
    from resp_sep.io import Recording, read_recording
    from resp_sep.pipeline import available_inputs, plan, respiration
    from resp_sep.sources import source_families, source_names

    rec = rec if isinstance(rec, Recording) else read_recording(rec)
    algo, _ = options(signal=signal, channel=channel, model=model, device=device)
    p = str(rec.path)
    avail = set(available_inputs(rec, algo.channel))
    kinds = [k for k in ("ecg", "ppg") if k in avail and (algo.signal in ("auto", "both") or algo.signal == k)]
    every = [n for k in kinds for n in source_names(k)]
    resp = respiration(rec, dataclasses.replace(algo, method=",".join(every), signal="auto"), separators)
    got = {n: o.wave for n, o in resp.sources.items()}
    combos = {label: plan(FUSION if m in (FUSION, FUSION_SEPARATOR) else m, algo.signal, avail, p,
                          with_separators=(m == FUSION_SEPARATOR))
              for label, m in methods.items()}
    if singles:
        combos.update({n: [n] for n in got})
    waves = {}
    for label, names in combos.items():
        use = {n: got[n] for n in names if n in got}
        if use:
            fused = fuse(use, resp.fs, families=source_families(use))
            waves[label] = (fused.wave, resp.fs)
            if fusions is not None:
                fusions[label] = fused
    return waves, "+".join(resp.channels)


# ---------------------------------------------------------------------------------------- inputs


def _recording(ecg, ppg, ecg_fs, ppg_fs, channel):
    """A :class:`~resp_sep.io.Recording` of the given arrays, dict, MNE Raw or Recording."""
    from resp_sep.io import Recording, recording_from_arrays

    if isinstance(ecg, Recording):
        _only_one(ppg, ecg_fs, ppg_fs, "a Recording")
        return ecg
    if _is_mne_raw(ecg):
        _only_one(ppg, ecg_fs, ppg_fs, "an MNE Raw")
        return recording_from_mne(ecg, channel)
    if isinstance(ecg, Mapping):
        _only_one(ppg, ecg_fs, ppg_fs, "a dict of signals")
        return recording_from_arrays(dict(ecg), name="<signals>")
    signals = {}
    for label, x, fs, opt in ((ECG_LABEL, ecg, ecg_fs, "ecg_fs"), (PPG_LABEL, ppg, ppg_fs, "ppg_fs")):
        if x is None:
            if fs is not None:
                raise UsageError(f"{opt} given without the {label} samples")
            continue
        if fs is None:
            raise UsageError(f"{opt} is required with {label.lower()} samples (sampling rate in Hz)")
        signals[label] = (np.asarray(x).reshape(-1) if np.ndim(x) == 2 and 1 in np.shape(x) else x, fs)
    if not signals:
        raise UsageError("give ecg and/or ppg samples (with ecg_fs / ppg_fs), a dict of signals or an MNE Raw")
    return recording_from_arrays(signals, name="<arrays>")


def _only_one(ppg, ecg_fs, ppg_fs, what: str) -> None:
    if ppg is not None or ecg_fs is not None or ppg_fs is not None:
        raise UsageError(f"with {what} as input, give no ppg, ecg_fs or ppg_fs (its channels and rates are used)")


def _is_mne_raw(obj) -> bool:
    """Whether ``obj`` is an ``mne.io.BaseRaw`` (MNE is imported only when the object comes from it)."""
    mod = type(obj).__module__ or ""
    if mod.split(".")[0] == "mne":
        import mne

        return isinstance(obj, mne.io.BaseRaw)
    return False


def recording_from_mne(raw, channel=None):
    """A Recording of the ECG/PPG channels of an ``mne.io.BaseRaw`` (or an object with its interface).

    Only the channels that serve the ECG and PPG roles are read (``raw.get_data(picks=...)``, in
    the Raw's physical units, e.g. V); roles come from ``raw.ch_names`` (``channel`` overrides,
    as for files). ``raw.info["meas_date"]`` becomes the start time.
    """
    from resp_sep.channels import detect_roles, parse_overrides
    from resp_sep.io import recording_from_arrays

    names = [str(n) for n in raw.ch_names]
    fs = float(raw.info["sfreq"])
    if isinstance(channel, Mapping):
        overrides = parse_overrides([f"{k}={v}" for k, v in channel.items()])
    else:
        overrides = parse_overrides([channel] if isinstance(channel, str) else list(channel or []))
    name = f"<mne {getattr(raw, 'filenames', [None])[0] or type(raw).__name__}>" if getattr(raw, "filenames", None) \
        else f"<mne {type(raw).__name__}>"
    roles = detect_roles(names, overrides, path=name)
    picks = [roles[r].label for r in ("ecg", "ppg") if r in roles]
    if not picks:
        raise InputError(f"no ECG or PPG channel among {', '.join(names) or 'none'}; name one with "
                         "channel={'ecg': LABEL}", name)
    data = np.asarray(raw.get_data(picks=picks), dtype=np.float64)
    units = {}
    try:
        chs = {c["ch_name"]: c for c in raw.info["chs"]}
        units = {p: "V" for p in picks if int(chs[p].get("unit", 0)) == 107}  # FIFF_UNIT_V
    except (KeyError, TypeError, ValueError):
        pass
    start = raw.info.get("meas_date") if hasattr(raw.info, "get") else None
    return recording_from_arrays({p: (data[i], fs) for i, p in enumerate(picks)}, name=name, units=units,
                                 start_time=start)
