"""respsep: breathing signal and breathing rate from ECG and PPG, without a respiration sensor.

Public surface
--------------
read_recording : open an EDF/EDF+/BDF/WFDB file lazily (:mod:`resp_sep.io`).
detect_roles   : map channel labels to ``ecg``/``ppg``/``nasal``/``thor``/``abdo`` (:mod:`resp_sep.channels`).
"""

__version__ = "0.1.0"

from resp_sep.errors import RespSepError  # noqa: E402

__all__ = ["__version__", "RespSepError"]
