"""The `bench` command.

Sub-commands live next to the code they drive and are imported only when invoked, so `bench --help` is instant
and a missing optional dependency only affects the command that needs it.
"""

from __future__ import annotations

import sys
from importlib import import_module

import click

from benchmark import __version__
from benchmark.errors import BenchError, ReportedInterrupt

# command name -> "module:attribute" of a click command or group
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("benchmark.datasets.cli:data", "list, check, convert and prepare (VOC, COCO) datasets"),
    "eval": ("benchmark.evaluation.cli:eval_cmd", "evaluate a COCO results file against ground truth"),
    "noise": ("noise.cli:noise", "make, inspect and list box-noise models"),
    "train": ("benchmark.train_cli:train", "train one method on one dataset"),
    "predict": ("benchmark.train_cli:predict", "predict (and evaluate) with a trained checkpoint"),
    "run": ("benchmark.runner.cli:run", "run a sweep: method x noise level x seed"),
    "report": ("reports.cli:report", "write comparison reports for a results store"),
    "inspect": ("reports.inspect_cli:inspect_cmd", "look at clean, noisy, refined and predicted boxes (FiftyOne)"),
    "leaderboard": ("leaderboard.cli:leaderboard", "add, validate and render leaderboard rows"),
    "methods": ("methods.cli:methods", "list registered method adapters"),
    "weights": ("benchmark.weights:weights_cli", "fetch ImageNet backbone weights into the torch cache"),
    "new-method": ("methods.cli:new_method", "scaffold a new method adapter package"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        mod, attr = target.split(":")
        return getattr(import_module(mod), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, help_) for name, (_, help_) in sorted(COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="bench")
def cli():
    """noisybox-bench: benchmark object detectors trained on noisy boxes."""


def main(argv=None):
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        # without standalone mode click returns the code of `ctx.exit(n)` / `Exit(n)` instead of exiting
        code = cli.main(args=argv, prog_name="bench", standalone_mode=False)
    except BenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort as exc:
        if not isinstance(exc.__cause__ or exc.__context__, ReportedInterrupt):
            click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        if not isinstance(exc, ReportedInterrupt):
            click.echo("interrupted", err=True)
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
