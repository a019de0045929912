"""The ``respsep`` command line: a thin layer over the library calls.

Exit codes (also in ``respsep --help`` and docs/cli.md): 0 success, 1 internal error (a bug),
2 invalid usage, 3 unusable input recording, 4 batch finished with some files failed,
5 model checkpoint problem, 6 output cannot be written, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from resp_sep import __version__
from resp_sep.errors import (
    EXIT_CODES,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    RespSepError,
)

_EXIT_HELP = "Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + "."

app = typer.Typer(
    name="respsep",
    help="Breathing signal and breathing rate from ECG and PPG recordings, without a respiration sensor.\n\n"
    + _EXIT_HELP,
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        print(f"respsep {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for internal errors."),
) -> None:
    """respsep: breathing signal and breathing rate from ECG and PPG."""
    if debug:
        os.environ["RESPSEP_DEBUG"] = "1"


# ----------------------------------------------------------------------------------------- helpers


def _fail_line(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)


def _emit_json(obj) -> None:
    """Print JSON to stdout (no rich markup, no wrapping) for scripts."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# -------------------------------------------------------------------------------------------- info


@app.command()
def info(
    files: list[str] = typer.Argument(..., help="Recordings: EDF/BDF files, WFDB records (.hea), folders or globs."),
    channel: Optional[list[str]] = typer.Option(None, "--channel", "-c", help="Force a role: ROLE=LABEL (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show channels, sampling rates, units, durations and detected roles of recordings."""
    from resp_sep.channels import detect_roles, parse_overrides
    from resp_sep.io import find_recordings, read_recording

    overrides = parse_overrides(channel)
    paths = find_recordings(files)
    results, failures = [], []
    for p in paths:
        try:
            rec = read_recording(p)
            roles = detect_roles(rec.labels, overrides)
        except RespSepError as e:
            failures.append({"file": p, "error": e.problem, "exit_code": e.exit_code})
            if not as_json:
                _fail_line(str(e))
            continue
        by_label = {c.label: r for r, c in roles.items()}
        item = {
            "file": str(rec.path),
            "format": rec.format,
            "start_time": rec.start_time.isoformat() if rec.start_time else None,
            "duration_s": round(rec.duration_s, 3),
            "channels": [
                {"label": c.label, "fs_hz": c.fs, "unit": c.unit, "n_samples": c.n_samples,
                 "duration_s": round(c.duration_s, 3), "role": by_label.get(c.label)}
                for c in rec.channels
            ],
            "roles": {r: c.label for r, c in roles.items()},
            "notes": {r: c.note for r, c in roles.items() if c.note},
            "n_annotations": None,
        }
        try:
            item["n_annotations"] = len(rec.annotations)
        except RespSepError as e:  # a damaged annotation channel is worth a note, not a failure
            item["notes"]["annotations"] = e.problem
        results.append(item)
        if not as_json:
            _print_info(item)
    if as_json:
        _emit_json({"recordings": results, "failed": failures})
    if failures:
        raise typer.Exit(EXIT_PARTIAL if results else failures[0]["exit_code"])


def _print_info(item: dict) -> None:
    t = Table(title=f"{item['file']}  [dim]({item['format']}, {item['duration_s'] / 60:.1f} min"
              + (f", start {item['start_time']}" if item["start_time"] else "") + ")[/]",
              title_justify="left")
    for col, just in [("channel", "left"), ("rate (Hz)", "right"), ("unit", "left"),
                      ("duration (s)", "right"), ("role", "left")]:
        t.add_column(col, justify=just)
    for c in item["channels"]:
        role = c["role"] or ""
        t.add_row(c["label"], f"{c['fs_hz']:g}", c["unit"], f"{c['duration_s']:.1f}",
                  f"[bold green]{role}[/]" if role else "")
    out.print(t)
    for r, note in item["notes"].items():
        out.print(f"  [yellow]note[/] {r}: {note}")
    if item["n_annotations"]:
        out.print(f"  {item['n_annotations']} annotations")


# ------------------------------------------------------------------------------------------- entry


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app and turn every failure into one line and an exit code."""
    debug = os.environ.get("RESPSEP_DEBUG") == "1" or "--debug" in (argv or sys.argv[1:])
    try:
        rv = app(args=argv, prog_name="respsep", standalone_mode=False)
        code = rv if isinstance(rv, int) else EXIT_OK
    except RespSepError as e:
        _fail_line(str(e))
        code = e.exit_code
    except KeyboardInterrupt:
        _fail_line("interrupted")
        code = EXIT_INTERRUPTED
    except MemoryError:
        _fail_line("out of memory")
        code = EXIT_INTERNAL
    except Exception as e:
        name = type(e).__name__
        if name == "Exit" and hasattr(e, "exit_code"):  # typer/click Exit (vendored or not)
            return int(e.exit_code or 0)
        if name == "Abort":
            _fail_line("interrupted")
            return EXIT_INTERRUPTED
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            # usage errors (Click/Typer): keep the message on one line, exit 2
            _fail_line(" ".join(e.format_message().split()))
            return int(e.exit_code)
        # anything else is a bug: one line unless --debug
        if debug or os.environ.get("RESPSEP_DEBUG") == "1":
            raise
        _fail_line(f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} (rerun with --debug)")
        code = EXIT_INTERNAL
    return int(code or 0)


def run() -> None:  # pragma: no cover - used by ``python -m resp_sep``
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
