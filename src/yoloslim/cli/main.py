"""``yoloslim`` command line. Each command lives in its own module and calls the library;
what is only the command line's (predict --save's folder rules, resume flags) stays there."""

from __future__ import annotations

import inspect
import os
import sys
import threading

try:
    import typer

    from yoloslim.cli import (
        bench_cmd,
        compress_cmd,
        data_cmd,
        distill_cmd,
        export_cmd,
        info_cmd,
        models_cmd,
        nas_cmd,
        predict_cmd,
        prune_cmd,
        quantize_cmd,
        train_cmd,
        val_cmd,
    )
    from yoloslim.cli.common import (
        console,
        drop_output,
        err_console,
        large_images,
        literal,
        setup_logging,
        sigterm_as_interrupt,
        stop_requested,
        teardown_logging,
    )
except KeyboardInterrupt:  # Ctrl-C while the command line itself loads (typer, rich)
    sys.stderr.write("interrupted\n")
    sys.exit(130)

app = typer.Typer(
    name="yoloslim",
    help="Compress YOLO-family detectors: NAS, re-parameterisation, pruning, distillation, INT8, export.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from yoloslim import __version__

        try:
            typer.echo(f"yoloslim {__version__}")
        except BrokenPipeError:  # `--version | true`: the reader left, as for any command
            drop_output(sys.stdout)  # (click exited with code 1: audit46 cli F1)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also show the library's progress log (INFO) on stderr."
    ),
) -> None:
    """Compress YOLO-family detectors: NAS, re-parameterisation, pruning, distillation, INT8, export."""
    setup_logging(verbose=verbose)


def _help(fn) -> str:
    """``fn``'s docstring with each paragraph on one line: the help keeps a docstring's line
    breaks, so a sentence wrapped at 100 columns in the source broke mid-line on screen."""
    paragraphs = inspect.cleandoc(fn.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)


app.add_typer(data_cmd.app, name="data")
for _name, _fn in {
    "train": train_cmd.train,
    "val": val_cmd.val,
    "nas": nas_cmd.nas,
    "models": models_cmd.models,
    "info": info_cmd.info,
    "export": export_cmd.export,
    "predict": predict_cmd.predict,
    "bench": bench_cmd.bench,
    "prune": prune_cmd.prune,
    "distill": distill_cmd.distill,
    "quantize": quantize_cmd.quantize,
    "compress": compress_cmd.compress,
}.items():
    app.command(_name, help=_help(_fn))(_fn)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (for tests: ``main(["val", ...])``).

    Run as the ``yoloslim`` command (``argv`` None), a command stopped by Ctrl-C or SIGTERM
    exits at once, even when the interrupt left a library's worker thread waiting for work
    that will never come (the interpreter would wait for that thread at exit forever)."""
    from yoloslim.errors import STOPS

    try:
        with large_images():
            rc = _run(argv)
        stopped = stop_requested() is not None
    finally:
        STOPS.clear()  # the stop was this command's: library calls after it must not see it
        teardown_logging()  # a program that called main() keeps its own logging after it
    if argv is None and stopped and _stray_threads():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def run() -> None:
    """The ``yoloslim`` command (and ``python -m yoloslim``): :func:`main`, then the exit.
    A command whose work is done and said ignores Ctrl-C and SIGTERM while the interpreter
    shuts down (up to ~2 s after an export), which would turn its exit code into 130/143;
    here, not in :func:`main`, which a program may call and then go on."""
    rc = main()
    if rc not in (130, 143) and not _stray_threads():
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(rc)


def command():
    """The click command ``app`` builds, with no type shown for flags: typer's help wrote
    ``<bool>`` beside ``--resume --no-resume``, as if the flag took a value."""
    cmd = typer.main.get_command(app)
    todo = [cmd]
    while todo:
        c = todo.pop()
        todo.extend(getattr(c, "commands", {}).values())
        for p in c.params:
            _no_type(p)
            p.process_value = _not_empty(p, p.process_value)
        c.get_help_option = _help_option(c.get_help_option)  # made per call, not a param
    return cmd


def _no_type(param):
    if getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""
    return param


def _not_empty(param, process):
    """``process`` refusing an empty value given on the command line (``--out ''``, ``--out
    "$UNSET"``): it was the current folder, and a train or data synth wrote its files among
    the user's. An option whose default is empty (``--float-variants``: none) takes one."""
    # a folder's option (a file's, --model or --data, has no current-folder reading)
    path = param.name in ("out", "save", "report", "resume")
    if param.default == "":
        return process

    def checked(ctx, value):
        source = ctx.get_parameter_source(param.name)
        given = value if isinstance(value, list | tuple) else [value]
        if getattr(source, "name", None) == "COMMANDLINE":
            if any(isinstance(v, str) and not v.strip() for v in given):
                hint = " (give . for the current folder)" if path else ""
                raise typer.BadParameter(f"an empty value{hint}", ctx, param)
            # a value forgotten: the next option taken as it (--save --save-txt wrote into
            # a folder named --save-txt, without the labels: audit43 clidoc F2)
            # options only (an argument's bare name, "out", is a fine folder name: review2
            # F1), and the help option's (--out -h trained into a folder named -h: F3)
            options = {
                o
                for p in ctx.command.params
                if p.param_type_name == "option"
                for o in (*p.opts, *p.secondary_opts)
            } | set(ctx.help_option_names)
            taken = next((v for v in given if isinstance(v, str) and v in options), None)
            if taken is not None and not getattr(param, "is_flag", False):
                raise typer.BadParameter(
                    f"got the option {taken} as its value (a value is missing)", ctx, param
                )
        return process(ctx, value)

    return checked


def _help_option(make):
    return lambda ctx: None if (opt := make(ctx)) is None else _no_type(opt)


def _stray_threads() -> list[threading.Thread]:
    """Non-daemon threads still alive besides this one: what the interpreter joins at exit."""
    me = threading.current_thread()
    return [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]


def _stdout_is_null() -> bool:
    try:
        return os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(os.devnull))
    except (AttributeError, OSError, ValueError):
        return False


def _run(argv: list[str] | None) -> int:
    console.stderr = False  # a --json - of an earlier call in this process is not this one's
    was_null = _stdout_is_null()
    with sigterm_as_interrupt():
        try:
            # with standalone_mode=False click returns the code of a typer.Exit instead of raising
            rc = command().main(args=argv, prog_name="yoloslim", standalone_mode=False)
            return rc if isinstance(rc, int) else 0
        except typer.Exit as e:
            return e.exit_code
        except SystemExit as e:  # click's usage errors
            if e.code == 1 and not was_null and _stdout_is_null():
                return 0  # typer's own console met a closed output (--help | head -1)
            return int(e.code or 0)
        except Exception as e:
            # Usage errors (unknown option, missing argument, no such command) are click's
            # ClickException. newer typer releases vendor click instead of depending on it, so
            # the class is recognised by its interface rather than imported.
            if callable(getattr(e, "show", None)) and isinstance(
                getattr(e, "exit_code", None), int
            ):
                if type(e).__name__ == "BadParameter":
                    # a value refused (not an int; a file where a folder goes): one line
                    # naming the option, as every other user error; the usage is no help
                    err_console.print(
                        f"[bold red]error:[/] {literal(e.format_message())}", soft_wrap=True
                    )
                else:  # an unknown option or command, a missing one: the usage helps
                    e.show()
                return e.exit_code
            if type(e).__name__ == "Abort":  # EOF at a prompt
                return 1
            raise


if __name__ == "__main__":
    raise SystemExit(main())
