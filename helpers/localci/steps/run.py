"""The `run` step: a new shell per step, CircleCI's default shell and messages."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from helpers.localci.environment import format_duration, parse_duration
from helpers.localci.steps.base import StepContext, StepOutcome

DEFAULT_NO_OUTPUT_TIMEOUT = 600.0


def run_step(ctx: StepContext, args: Mapping[str, object]) -> StepOutcome:
    command = str(args.get("command", ""))
    shell = str(args.get("shell") or ctx.default_shell)
    resolved = ctx.env.shell_argv(shell)
    if resolved is None:
        program = shell.split()[0] if shell.split() else shell
        ctx.emit(f'exec: "{program}": executable file not found in $PATH\n')
        return StepOutcome.failed(127)
    executable, argv = resolved
    cwd = ctx.working_directory
    if args.get("working_directory"):
        cwd = ctx.path(str(args["working_directory"]))
    cwd.mkdir(parents=True, exist_ok=True)
    variables = dict(ctx.variables)
    variables.update({str(k): str(v) for k, v in dict(args.get("environment") or {}).items()})
    timeout = parse_duration(args.get("no_output_timeout"), DEFAULT_NO_OUTPUT_TIMEOUT)

    def execute() -> StepOutcome:
        # CircleCI opens every run step's log with the shell line and the command itself.
        ctx.emit(f"#!{shell}\n{command.rstrip()}\n")
        started: list[subprocess.Popen[bytes]] = []

        def on_start(proc: subprocess.Popen[bytes]) -> None:
            started.append(proc)
            ctx.track(proc)

        result = ctx.env.execute(
            executable,
            [*argv, "-c", command],
            env=variables,
            cwd=cwd,
            on_output=ctx.emit,
            no_output_timeout=timeout,
            deadline=ctx.deadline,
            on_start=on_start,
            cancelled=ctx.cancelled,
        )
        for proc in started:
            ctx.untrack(proc)
        if result.ending == "no_output":
            ctx.emit(
                f"\nToo long with no output (exceeded {format_duration(timeout)}): "
                "context deadline exceeded\n"
            )
            return StepOutcome("timedout", None)
        if result.ending == "deadline":
            return StepOutcome("timedout", None)
        if result.ending == "canceled":
            return StepOutcome("canceled", None)
        if result.exit_code:
            ctx.emit(
                f"\nExited with code exit status {result.exit_code}\n"
                f"CircleCI received exit code {result.exit_code}\n"
            )
            return StepOutcome.failed(result.exit_code)
        return StepOutcome.ok()

    if args.get("background"):
        ctx.background(execute)
        return StepOutcome.ok()
    return execute()
