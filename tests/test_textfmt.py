"""resp_sep.textfmt: vectorised %.Nf / %.Ng formatting is byte for byte numpy.savetxt's output."""

from __future__ import annotations

import io

import numpy as np
import pytest

from resp_sep.textfmt import format_rows
from resp_sep.writers import write_csv

TRICKY = np.array([
    np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-300, -1e-300, 5e-324, -5e-324, 1.7976931348623157e308,
    -1e-5, 1e-5, 0.5, 1.5, 2.5, -2.5, 0.125, 0.0625, 123456.5, 1234565.0, 999999.5, 9999995.0, 0.000123456789,
    -0.00001, 99999.95, 0.00009999995, 1e22, 1e23, 1e-22, 123.456, 1e16, 2.0**53, 2.0**52 + 0.5, 0.1, 0.2,
    0.3, 1 / 3, 2 / 3, 100, 1e5, 1e6, 1e-4, 1e-5, 9.9999995e-5, 0.00049999999999999, 12345678901234567890.0,
    1e100, -1.5e-200, 120000, 1200000, 10, 0.001, 0.01, -0.00004, 0.99999949999, 9.5, 0.95, 0.095,
])
FORMATS = ["%.4f", "%.6g", "%.2f", "%.3f", "%.0f", "%.1g", "%.0g", "%.10g", "%.12f", "%.17g", "%.3g"]


def _savetxt(cols, fmts) -> bytes:
    buf = io.StringIO()
    np.savetxt(buf, np.column_stack(cols), fmt=",".join(fmts), delimiter=",")
    return buf.getvalue().encode()


def _values() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    n = 20_000
    return [
        TRICKY,
        rng.standard_normal(n) * 10.0 ** rng.integers(-12, 12, n),   # all magnitudes of %g
        rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n),  # extremes (Python fallback)
        rng.standard_normal(n).astype(np.float32).astype(np.float64),  # what extraction writes
        np.round(rng.standard_normal(n) * 1e4) / 1e4,                 # near-ties of %.4f
        np.arange(n) / 25.0, np.arange(n) / 3.0,
        rng.integers(-10**6, 10**6, n) / 8.0,                          # exact binary ties
        10.0 ** rng.integers(-8, 8, 1000), -(10.0 ** rng.integers(-8, 8, 1000)),
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_rows_equals_savetxt(fmt):
    for v in _values():
        assert format_rows([v], [fmt]) == _savetxt([v], [fmt])


def test_two_columns_and_float32_column_like_extraction():
    rng = np.random.default_rng(1)
    t = np.arange(50_000) / 25.0
    y = (rng.standard_normal(50_000) * 10.0 ** rng.integers(-6, 4, 50_000)).astype(np.float32)
    y[[3, 7, 11]] = [np.nan, -0.0, np.inf]
    assert format_rows([t, y], ["%.4f", "%.6g"]) == _savetxt([t, y], ["%.4f", "%.6g"])


def test_unsupported_formats_and_dtypes_fall_back():
    x = np.arange(3.0)
    assert format_rows([x], ["%d"]) is None
    assert format_rows([x], ["%10.3f"]) is None
    assert format_rows([x], ["%.3e"]) is None
    assert format_rows([np.arange(3)], ["%.3f"]) is None  # integer columns: savetxt's own path


def test_write_csv_bytes_equal_savetxt_across_chunks(tmp_path, monkeypatch):
    from resp_sep import writers

    monkeypatch.setattr(writers, "CSV_CHUNK_ROWS", 7)  # many chunks, a partial last one
    rng = np.random.default_rng(2)
    t = np.arange(100) / 25.0
    y = rng.standard_normal(100).astype(np.float32)
    y[[0, 50, 99]] = [np.nan, -0.0, 1e-30]
    write_csv(tmp_path / "a.csv", ["time_s", "resp"], [t, y], ["%.4f", "%.6g"])
    assert (tmp_path / "a.csv").read_bytes() == b"time_s,resp\n" + _savetxt([t, y], ["%.4f", "%.6g"])
    # a format the fast path does not handle goes through savetxt, same bytes as before
    write_csv(tmp_path / "b.csv", ["i"], [np.arange(10)], ["%d"])
    assert (tmp_path / "b.csv").read_bytes() == b"i\n" + _savetxt([np.arange(10)], ["%d"])
