"""The command line: the only place that prints, writes files and maps errors to exit codes.

archkit.cli.parser builds the parser; each command is a module here with `run(args) -> int`,
imported only when it runs, so that `archkit --help` and `archkit analyse` pay only for what
they use. archkit.cli.options checks the options' text, archkit.cli.common what commands share.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
import traceback

from archkit.cli.parser import build
from archkit.errors import ArchkitError, InternalError, UsageError
from archkit.render.escape import terminal

__all__ = ["COMMANDS", "EXIT_PIPE", "main"]

# command → the module that runs it
COMMANDS = {"list": "listing", "export": "export", "verify": "verify", "bench": "bench", "report": "report",
            "analyse": "analyse", "analyze": "analyse", "connectivity": "connectivity", "train": "train",
            "primitives": "primitives"}

# stdout closed before archkit finished writing (`archkit list | head -1`): the code a shell
# reports for a program SIGPIPE stops (128 + 13). Not 1, which means a bug in archkit.
EXIT_PIPE = 141


def _stdout_to_devnull() -> None:
    """What CPython's signal docs advise after a BrokenPipeError: point stdout at devnull so
    that the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a file (e.g. captured in tests)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # before parsing: errors while parsing need it too
    # --debug lets TensorFlow's own logging through (archkit.keras.export reads this level)
    logging.getLogger("archkit").setLevel(logging.DEBUG if debug else logging.NOTSET)
    try:
        args = build().parse_args(argv)
        args.started = started
        # the command's module, imported now: only what this command needs is loaded
        code = importlib.import_module(f"archkit.cli.{COMMANDS[args.command]}").run(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's own last flush
        return code
    except BrokenPipeError:  # archkit writes to no pipe but stdout and stderr: the reader has gone
        _stdout_to_devnull()
        return EXIT_PIPE
    except ArchkitError as e:
        if debug and not isinstance(e, UsageError):  # a usage error's traceback tells nothing
            traceback.print_exc()
        # an InternalError's message says itself that it is archkit's bug
        print(f"archkit: {'' if isinstance(e, InternalError) else 'error: '}{terminal(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("archkit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - anything else is a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        print(f"archkit: internal error: {terminal(type(e).__name__ + ': ' + (str(e).splitlines() or [''])[0])}"
              + ("" if debug else " (rerun with --debug for the traceback)"), file=sys.stderr)
        return 1
