"""The command line: parse, load config, call the library, map ``EdgetlError`` to a message and an exit code.

Exit codes: 0 ok, 1 a gate or budget failed, 2 usage or input error, 3 runtime/export failure (and any
unexpected exception), 4 the regression gate is inconclusive (latency noise above its threshold), 130 interrupted.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from edgetl import __version__
from edgetl.errors import (
    EXIT_INTERRUPTED,
    EXIT_RUNTIME,
    BudgetExceededError,
    EdgetlError,
    GateInconclusiveError,
)


class Group(click.Group):
    """Turns every error into one message and a documented exit code, never a traceback.

    edgetl's own errors carry their exit code; any other exception is a bug or an environment failure (a full
    disk, a library crash) and exits 3 with its type and message. ``--verbose`` (or ``EDGETL_VERBOSE=1``) adds
    the traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        # the command line as given: click empties these before the command runs
        protected = getattr(ctx, "_protected_args", None)
        ctx.meta["edgetl.argv"] = [*(protected if protected is not None else vars(ctx).get("protected_args", [])),
                                   *ctx.args]
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own usage errors and exits keep their codes
        except EdgetlError as exc:
            if isinstance(exc, BudgetExceededError | GateInconclusiveError) and exc.table:
                click.echo(exc.table, err=True)
            _print_traceback_if_verbose(ctx)
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.secho(f"interrupted: finished files are kept; {_resume_hint(ctx)}", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # not raised on purpose: one line, the runtime-failure code
            shown = _print_traceback_if_verbose(ctx)
            first = (str(exc).strip().splitlines() or [""])[0]
            click.secho(f"error: unexpected {type(exc).__name__}: {first}", fg="red", err=True)
            if not shown:
                click.echo("  hint: rerun with --verbose (or EDGETL_VERBOSE=1) for the traceback, and report it "
                           "if the cause is not your input", err=True)
            ctx.exit(EXIT_RUNTIME)


def _verbose(ctx: click.Context) -> bool:
    import os

    if os.environ.get("EDGETL_VERBOSE", "") not in ("", "0"):
        return True
    return any(a in ("--verbose", "-v") for a in ctx.meta.get("edgetl.argv", ()))


def _print_traceback_if_verbose(ctx: click.Context) -> bool:
    if not _verbose(ctx):
        return False
    import traceback

    click.echo(traceback.format_exc().rstrip(), err=True)
    return True


def _resume_hint(ctx: click.Context) -> str:
    command = ctx.invoked_subcommand
    if command == "train":
        return "add --resume to continue from OUT/train/last.pt"
    if command == "build":
        return "rerun the same command to resume"
    return "rerun the same command"


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="edgetl")
def cli() -> None:
    """edgetl: take a pretrained vision backbone to an edge device.

    \b
    The pipeline, one command per stage, or all of them with `build`:
      train     fine-tune a pretrained backbone on your classes
      quantize  quantization-aware fine-tuning to int8, with a PTQ baseline
      export    ONNX (fp32, int8 QDQ) and OpenVINO IR, each checked against torch
      bench     latency and accuracy of every artifact on every runtime this host has
      report    report.md / report.html with plots from results.json
      build     all of the above for a target, cached and resumable, ending in a bundle
      predict   classify images with a bundle
      compare   feature extraction vs fine-tuning vs random initialisation, same data and split

    \b
    Quick start (offline, built-in digits data set):
      edgetl build --target cpu
      edgetl build --target jetson --data path/to/imagefolder --out runs/mine

    OpenVINO's and NNCF's usage telemetry is turned off unless EDGETL_ALLOW_TELEMETRY=1.
    """
    import os

    if os.environ.get("EDGETL_ALLOW_TELEMETRY") != "1":
        # openvino's converter skips telemetry when CI=true; NNCF reads NNCF_CI
        os.environ.setdefault("CI", "true")
        os.environ.setdefault("NNCF_CI", "1")


def _interrupt_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point. SIGTERM (a CI timeout, ``kill``, a container stop) takes the Ctrl-C path:
    partial files are discarded, DataLoader workers are shut down, and the exit code is 130."""
    import faulthandler
    import signal

    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    # a crash inside a native library (a runtime, an exporter) prints the Python stack instead of dying silently
    faulthandler.enable()
    # edgetl's lines go to its own handler only: a library's module-level logging.warning() (ONNX Runtime's
    # quantization tools call it) installs a root handler, which would print every later edgetl line twice
    logging.getLogger("edgetl").propagate = False
    cli.main(prog_name="edgetl")


# the commands register themselves on `cli`
from edgetl.cli import bench, build, compare, predict, stages, targets  # noqa: E402,F401  isort: skip
