"""Shared CLI plumbing: error handling, JSON output, console."""

from __future__ import annotations

import _thread
import contextlib
import errno
import functools
import inspect
import json
import logging
import os
import re
import shlex
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from yoloslim.errors import STOPS, ConfigError, ModelError, YoloslimError, stop_requested
from yoloslim.fileio import atomic_write_text, dangling, write_problem
from yoloslim.progress import PIPED_WIDTH, shown
from yoloslim.sysinfo import first_process, relaunch
from yoloslim.torch_state import torch_threads

__all__ = [
    "DEVICE_HELP",
    "THREADS_HELP",
    "Terminated",
    "console",
    "drop_output",
    "file_identity",
    "handle_errors",
    "interrupt_exit_code",
    "interrupt_hint",
    "restart_hint",
    "same_path",
    "layered",
    "literal",
    "option_given",
    "print_table",
    "refuse_config_in_run",
    "setup_logging",
    "teardown_logging",
    "warn",
    "shown_default",
    "sigterm_as_interrupt",
    "stop_requested",
    "torch_threads",
    "write_json",
    "STDOUT",
]

# rich falls back to 80 columns when stdout is not a terminal (make demo | tee, CI logs), which
# squeezes the comparison tables into unreadable "Par…" cells; piped output gets PIPED_WIDTH,
# unless COLUMNS says otherwise (as for the progress bars)
_piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ


def drop_output(stream: Any) -> None:
    """Send the rest of what is written to ``stream`` (stdout or stderr) to /dev/null: its
    reader stopped reading (``yoloslim predict --save out | head``). The printing ends there,
    not the work: rich exited with code 1 at once, and predict left a half-written --save."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # a test's capture: nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class _Console(Console):
    """rich's Console, but a closed output ends only the printing (see :func:`drop_output`)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        drop_output(self.file)


console = _Console(stderr=False, width=PIPED_WIDTH if _piped else None)
err_console = _Console(stderr=True)
#: the ``--json`` value that writes the JSON to standard output
STDOUT = "-"
#: ``--device`` and ``--threads`` of the commands that run an artifact (predict, val)
DEVICE_HELP = (
    "cpu; cuda[:N] for .pt, .torchscript and .onnx; auto (cuda where the runtime has a GPU, "
    "else cpu; OpenVINO's AUTO for .xml); an OpenVINO device (GPU, NPU) for .xml."
)
THREADS_HELP = (
    "Threads the runtime computes on (default: its own choice; on a busy machine fewer can "
    "be much faster for .pt and .torchscript)."
)


def literal(value: Any) -> str:
    """``value`` as text that rich prints as it is: a path, a class name or anything else
    from the user's files, where rich would read ``[bold]`` or ``[/x]`` as markup (a style,
    a lost word, a MarkupError). For a table title or cell and a ``console.print`` line whose
    own markup (``[yellow]warning``) stays markup."""
    return escape(str(value))


def print_table(table, to: Console | None = None) -> None:
    """Print a rich ``table`` whole: no cell is cut to "…". A table whose columns cannot fit the
    terminal side by side is printed turned (one row per column: ``Model``, ``Latency``, ...
    down the side, one column per row), and what still does not fit folds onto the next line."""
    from rich.table import Table

    out = to or console
    for col in table.columns:
        col.overflow = "fold"
    if len(table.columns) > 2 and _min_width(table, out) > out.width:
        turned = Table(
            title=table.title,
            caption=table.caption,
            title_justify=table.title_justify,
            show_header=table.show_header,
        )
        first, *rest = table.columns
        turned.add_column(str(first.header), overflow="fold")
        for cell in first.cells:
            turned.add_column(cell, justify="right", overflow="fold")
        for col in rest:
            turned.add_row(col.header, *col.cells)
        if _min_width(turned, out) < _min_width(table, out):
            table = turned
    out.print(table)


def _min_width(table, out: Console) -> int:
    return table.__rich_measure__(out, out.options).minimum


def shown_default(text: str) -> str:
    """``[default: text]`` for the help of an option whose own default is None (a config file
    may set it), as typer shows a default; escaped, or the help's rich markup swallows it."""
    return f"\\[default: {text}]"


class _Stderr(logging.StreamHandler):
    """A handler writing to ``sys.stderr`` as it is when a record comes (a test's capture, a
    redirect made after start-up), not as it was when the handler was made."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.setStream; stderr stays the stream
        pass


class _Formatter(logging.Formatter):
    """A warning or an error as the command line's own (``warning: ...``); with ``--verbose``
    the INFO lines keep the logger's name (which step said it)."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return f"{record.levelname} {record.name}: {text}"


_LOGGING: dict[str, Any] = {}  # what setup_logging changed, for teardown_logging


def setup_logging(verbose: bool = False) -> None:
    """For one command: every warning on stderr as ``warning: ...``, as the commands' own;
    ``--verbose`` adds yoloslim's INFO log (what each step did). Other libraries' loggers stay
    at WARNING (torch's export tracing logs thousands of DEBUG/INFO lines). Without this,
    Python's last-resort handler printed a library warning as its bare message, not telling it
    from a result. A program that runs the command line (``main([...])``) with a handler of its
    own on the terminal keeps it alone (no warning printed twice); :func:`teardown_logging`
    undoes this when the command ends."""
    teardown_logging()
    root, ours = logging.getLogger(), logging.getLogger("yoloslim")
    _LOGGING["level"] = ours.level
    terminal = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    if not any(getattr(h, "stream", None) in terminal for h in root.handlers):
        handler = _Stderr()
        handler.setFormatter(_Formatter())
        root.addHandler(handler)
        _LOGGING["handler"] = handler
    ours.setLevel(logging.INFO if verbose else logging.WARNING)


def teardown_logging() -> None:
    """Undo :func:`setup_logging`: its handler goes, yoloslim's log level is back."""
    handler = _LOGGING.pop("handler", None)
    if handler is not None:
        logging.getLogger().removeHandler(handler)
    if "level" in _LOGGING:
        logging.getLogger("yoloslim").setLevel(_LOGGING.pop("level"))


def warn(text: str) -> None:
    """``text`` (rich markup, a user's value passed through :func:`literal`) as a warning on
    stderr, where every warning goes: ``yoloslim X > table.txt`` keeps only the results."""
    err_console.print(f"[yellow]warning:[/] {text}", soft_wrap=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch scheduler's stop), raised like Ctrl-C so that clean-up runs:
    temporary files are removed and an interrupted training run can be resumed."""


def interrupt_exit_code(exc: BaseException) -> int:
    """The shell's exit code for the signal that stopped the command: 143 for SIGTERM, 130
    for SIGINT (Ctrl-C)."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


# the most pixels an image may have for the command line (23170x23170, 1.6 GB as RGB; predict
# peaked at 1.8 GB on a 100 Mpx JPEG): Pillow's own limit (a warning above 89.5 Mpx, refused
# above 179 Mpx, a guard against decompression bombs) refused a drone orthophoto (audit49
# data F1)
IMAGE_PIXELS = 2**29


@contextlib.contextmanager
def large_images() -> Iterator[None]:
    """For one command: images up to :data:`IMAGE_PIXELS` read without a word, a larger one
    refused (an error naming the file, by the readers' own ``cannot decode`` errors): Pillow
    warned in its own form above its limit. A program that set Pillow's limit higher (or off)
    keeps it. Pillow's setting and the warning filter are back as they were after."""
    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    if before is None or before >= IMAGE_PIXELS:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = IMAGE_PIXELS
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the command runs, SIGTERM raises :class:`Terminated` in the main thread instead
    of killing the process on the spot, and both it and Ctrl-C are recorded (see
    :func:`stop_requested`). A forked child (a DataLoader worker) that inherits the handler
    dies of the signal as before; an ignored SIGINT (a background job) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()
    STOPS.clear()
    in_hook = False

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if in_hook:  # raised in the hook below, the stop would be lost as well
            redeliver(signum)
            return
        if _SAYING:  # the stop's own line is being printed: it is ending already
            return
        stop = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        STOPS.append(stop)
        raise stop

    def redeliver(signum: int) -> None:
        # from another thread, so that the handler runs once this one is back in the
        # command's code (a signal raised here would be handled at once, right here); not
        # once the command is over and the old handlers are back
        def send() -> None:
            if handler in _HANDLERS:
                os.kill(pid, signum)

        _thread.start_new_thread(send, ())

    def unraisable(info: Any) -> None:
        # a stop raised inside a finaliser (a generator the garbage collector closes, a
        # __del__) would be printed as "Exception ignored" and lost, and the command would
        # run on: send the signal again, so the handler raises it where the command runs
        nonlocal in_hook
        if any(info.exc_value is s for s in STOPS):
            in_hook = True
            try:
                redeliver(
                    signal.SIGTERM if isinstance(info.exc_value, Terminated) else signal.SIGINT
                )
            finally:
                in_hook = False
            return
        if STOPS and _worker_stopped(info.exc_value):
            return  # the stop reached the data loader's workers too (a terminal's Ctrl-C)
        previous_hook(info)

    _HANDLERS.add(handler)
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, handler)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, handler)
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    finally:
        _HANDLERS.discard(handler)  # first: a stop still being sent again is dropped
        sys.unraisablehook = previous_hook
        for signum, old in previous.items():
            signal.signal(signum, old)


# the handlers sigterm_as_interrupt() has installed and not yet removed
_HANDLERS: set[Callable] = set()
# set while a stop's line is printed (see :func:`_say_stop`)
_SAYING = False


def _say_stop(text: str) -> None:
    """Print a stop's line (its word, how to go on) to stderr, ignoring a further SIGTERM or
    Ctrl-C meanwhile: torchrun sends its ranks SIGTERM after the Ctrl-C, and raised within
    the print (rich loads a module for its first line) it left the bare word, without the
    resume command (audit46 review2 M)."""
    global _SAYING
    _SAYING = True
    try:
        err_console.print(text, soft_wrap=True)
    finally:
        _SAYING = False


def _defaults_in_forked_child() -> None:
    """A forked child (a DataLoader worker, a library's helper process) gets the default
    SIGTERM and SIGINT back (it dies of them, as the handler would have made it): a Python
    handler runs only between bytecodes, so a child stuck in C (a DNS lookup, say) would
    ignore the ``terminate()`` its parent sends, and the parent, joining it at exit, would
    hang."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            if signal.getsignal(signum) in _HANDLERS:
                signal.signal(signum, signal.SIG_DFL)


os.register_at_fork(after_in_child=_defaults_in_forked_child)


@contextlib.contextmanager
def interrupt_hint(marker: Path, command: str, new_run: bool = False) -> Iterator[None]:
    """On Ctrl-C or SIGTERM, say how to go on: ``command`` once ``marker`` (a run's
    ``last.pt``, written atomically, so whole) exists, else that there is nothing to resume;
    exit with the shell's code for the signal (130, 143). An interrupt that a library turned
    into an error of its own (see :func:`stop_requested`) is the same stop. ``new_run``: the
    command starts a run afresh (``--exist-ok`` over an earlier one): only a ``marker`` it
    wrote itself is its own to resume."""
    earlier = file_identity(marker) if new_run else None

    def said(how: str) -> str:
        if marker.exists() and (earlier is None or file_identity(marker) != earlier):
            return f"{how}; continue with `{command}`"
        if marker.exists():  # the run this one was replacing: not this one's to resume
            return (
                f"{how} before this run wrote its {marker.name}; nothing of it to resume "
                f"({marker.parent} still holds the earlier run's)"
            )
        return f"{how} before {marker.name} was written; nothing to resume"

    with _stop_said(said):
        yield


@contextlib.contextmanager
def restart_hint(what: str) -> Iterator[None]:
    """On Ctrl-C or SIGTERM, say that the command does not resume and what a new run
    does (``what``), and exit with the shell's code for the signal (130, 143)."""
    with _stop_said(lambda how: f"{how}; {what}"):
        yield


@contextlib.contextmanager
def _stop_said(said: Callable[[str], str]) -> Iterator[None]:
    """A stop (Ctrl-C, SIGTERM, or a library's error for one) inside: the line ``said`` gives
    for its word (``interrupted``, ``terminated``), printed once (torchrun: by the first
    process), and the shell's exit code for the signal."""
    try:
        yield
    except typer.Exit:
        raise
    except (KeyboardInterrupt, Exception) as e:
        stop = e if isinstance(e, KeyboardInterrupt) else stop_requested()
        if stop is None and _peer_lost(e):
            # another torchrun process died (kill -9, out of memory) or failed: gloo's
            # 60-line traceback said nothing of how to go on; this one says it, once per
            # surviving process (the first may be the one that died)
            text = said("stopped: another process of this torchrun run ended")
            _say_stop(f"[bold red]error:[/] {literal(text)}")
            raise typer.Exit(2) from None
        if stop is None and isinstance(e, OSError) and e.errno in _REFUSED_WRITES:
            # a full disk: the run's last.pt may be whole, and it goes on once there is room
            # (it was the bare OSError line, which did not say so: audit44 resume F1)
            text = f"{type(e).__name__}: {_refused_file(e)}; {said('the run stopped')}"
            _say_stop(f"[bold red]error:[/] {literal(text)}")
            raise typer.Exit(2) from None
        if stop is None:
            raise
        if first_process():
            # the folder's name as it is
            _say_stop(literal(said(_stop_word(stop))))
        raise typer.Exit(interrupt_exit_code(stop)) from None


def _peer_lost(e: BaseException) -> bool:
    """Whether ``e`` is torch.distributed's word that another process of the run is gone (a
    collective's connection reset or closed), under torchrun."""
    from yoloslim.sysinfo import world_size

    if world_size() <= 1:
        return False
    if type(e).__name__ in ("DistBackendError", "DistNetworkError", "DistError"):
        return True
    text = str(e)
    # gloo's words for a peer gone (not any gloo error: a size mismatch in a collective is
    # a fault of its own, and its message must show)
    lost = ("Connection reset by peer", "Connection closed by peer", "caused pair closure")
    return isinstance(e, RuntimeError) and any(k in text for k in lost)


def file_identity(path: Path) -> tuple[int, int, int] | None:
    """``(device, inode, mtime)`` of ``path``, which an atomic write changes; None when it
    is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _stop_word(stop: KeyboardInterrupt) -> str:
    return "terminated" if isinstance(stop, Terminated) else "interrupted"


def _report_stop(stop: KeyboardInterrupt) -> typer.Exit:
    _say_stop(_stop_word(stop))
    return typer.Exit(interrupt_exit_code(stop))


def _worker_stopped(e: BaseException | None) -> bool:
    """Whether ``e`` is PyTorch's word that a data loader worker died of SIGINT or SIGTERM:
    a stop sent to the process group (a terminal's Ctrl-C, a batch scheduler) stops the
    workers as well, and the loader's finaliser says so with a traceback."""
    text = str(e)
    return (
        isinstance(e, RuntimeError)
        and text.startswith("DataLoader worker")
        and text.rstrip(". ").endswith(
            ("killed by signal: Interrupt", "killed by signal: Terminated")
        )
    )


# the errnos of a write the machine refused: the user's to fix, whatever file it was
_REFUSED_WRITES = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}


def _refused_file(e: OSError) -> str:
    """The line for a file the machine refused (read-only, a file where a folder goes, a name
    too long, no space): the user's to fix, said in one line as the other errors are."""
    if e.filename is not None:
        where = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        return f"{where}: {e.strerror or e}"
    # a write refused where no file name came with it (a library's own writer)
    return f"{e.strerror or e} (while writing this command's output)"


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn yoloslim errors into a one-line message and exit code 2, and Ctrl-C or SIGTERM
    into one line and the shell's code for the signal (130, 143)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            json_path = kwargs.get("json_path")
            # every option is known now (one given after --json too), and no work is done yet
            if json_path and str(json_path) != STDOUT:
                out = kwargs.get("out")
                if isinstance(out, (str, Path)) and str(out) and same_path(json_path, out):
                    # the folder the run makes: the report, written last, would find a folder
                    raise ConfigError(
                        f"--json {json_path} is the --out folder; name a .json file "
                        "(inside it, or elsewhere)"
                    )
                clash = _input_clash(Path(json_path), kwargs)
                if clash:
                    raise ConfigError(
                        f"--json {json_path} {clash}; it is not replaced by the report"
                    )
                _check_record_target(Path(json_path), fn.__name__, kwargs)
            with shown():  # a large dataset's reading shows a bar too
                return fn(*args, **kwargs)
        except KeyboardInterrupt as e:
            raise _report_stop(e) from None
        except typer.Exit:  # already reported (interrupt_hint's resume line, say)
            raise
        except Exception as e:
            stop = stop_requested()
            if stop is not None:  # the interrupt surfaced as a library's error: it was a stop
                raise _report_stop(stop) from None
            if isinstance(e, OSError) and (e.filename is not None or e.errno in _REFUSED_WRITES):
                text = _refused_file(e)
            elif isinstance(e, YoloslimError):
                text = _name_flags(str(e), fn, kwargs)  # any of ours: ModelError nc=0 too
            else:
                raise
            # an argument or model refused is refused alike by every torchrun process: said
            # once (a data error may be one process's shard alone: each says its own)
            if first_process() or not isinstance(e, (ConfigError, ModelError)):
                # soft_wrap: never break the line, so the file paths in it stay whole
                err_console.print(
                    f"[bold red]error:[/] {type(e).__name__}: {escape(text)}", soft_wrap=True
                )
            raise typer.Exit(2) from e

    return wrapper


# ``name=value`` in a library error, where ``name`` is a setting or argument (``TrainConfig.batch=0``,
# ``advanced.preset=...``)
_SETTING = re.compile(r"(?<![\w.-])(?:(?:[A-Z]\w*|advanced)\.)?([a-z_][a-z0-9_]*)=")


def _name_flags(text: str, fn: Callable[..., Any], params: dict[str, Any]) -> str:
    """``text`` with each ``[Class.]name=value`` the library wrote for a setting the command
    got as an option with that very value said as the option: ``--batch 0`` for
    ``TrainConfig.batch=0``, so the user reads what to change on the command line. A command
    that reads ``--config`` (it has a context) rewrites only the options given on the command
    line: a value from the file keeps its setting's name."""
    signature = inspect.signature(fn).parameters
    ctx = params.get("ctx")

    def flag(m: re.Match) -> str:
        name = m.group(1)
        value = params.get(name)
        if name not in signature or value is None or isinstance(value, bool):
            return m.group(0)
        if isinstance(ctx, typer.Context) and not option_given(ctx, name):
            return m.group(0)
        shown = repr(str(value)) if isinstance(value, Path) else repr(value)
        decls = getattr(signature[name].default, "param_decls", None) or ()
        longs = [d for d in decls if d.startswith("--")]
        option = longs[0].split("/")[0] if longs else "--" + name.replace("_", "-")
        end = m.end() + len(shown)
        # the value whole: followed by the end of the text or a separator (not a digit of it)
        whole = text.startswith(shown, m.end()) and text[end : end + 1] in " ,;):"
        if not whole or re.search(rf"{re.escape(option)}(?![\w-])", text):
            return m.group(0)
        if isinstance(signature[name].default, typer.models.ArgumentInfo):
            return m.group(0)  # a positional argument has no option to name
        return f"{option} "

    def named(m: re.Match) -> str:
        # ``runs_per_round=0 (--runs)``: the library named the option itself, where the
        # setting's name differs from it; said as the option with the command line's value
        param = _param_of(m.group(2), signature)
        if param is None or (isinstance(ctx, typer.Context) and not option_given(ctx, param)):
            return m.group(0)
        value = params.get(param)
        if isinstance(value, bool):  # ``nms=True (--nms)``: the flag alone says it
            return m.group(2) if value and m.group(1) == "True" else m.group(0)
        if value is None:
            return m.group(0)
        if isinstance(value, list | tuple):
            shown = ",".join(str(v) for v in value)
        elif isinstance(value, str | Path) and m.group(1) != repr(value):
            shown = str(value)  # the text typed (``--batch 0`` for ``batches=[0]``)
        else:
            shown = repr(value)
        if _bare_value(m.group(1)) != _bare_value(shown):  # another value: not the option's
            return m.group(0)
        return f"{m.group(2)} {shown}"

    def bare(m: re.Match) -> str:  # ``triton_max_batch (--triton-max-batch): 0 must be ...``
        param = _param_of(m.group(2), signature)
        if (
            param is None
            or m.group(1).replace("_", "-") != m.group(2)[2:]  # the option's own setting only
            or (isinstance(ctx, typer.Context) and not option_given(ctx, param))
        ):
            return m.group(0)
        return m.group(2)

    return _BARE.sub(bare, _NAMED.sub(named, _SETTING.sub(flag, text)))


# ``name=value (--option)`` and ``name (--option)`` in a library error that names the
# command-line option itself
# (the value one token, a quoted string or a [list], right before the option: ``model=PATH:
# this run writes ... (--out)`` was taken whole as a value, and the message lost its reason)
# (each begins a word: not inside a value or a path, ``formats=['onnx=x']``, ``/no_such (--data)``)
_NAMED = re.compile(
    r"(?<!\S)(?:(?:[A-Z]\w*|budget)\.)?[a-z_][a-z0-9_]*="
    r"(\[[^\]]*\]|'[^']*'|\"[^\"]*\"|[^\s=(),;:'\"\[\]]+) \((--[a-z][a-z0-9-]*)\)"
)
_BARE = re.compile(r"(?<!\S)([a-z]+_[a-z0-9_]*) \((--[a-z][a-z0-9-]*)\)")  # a snake_case name


def _bare_value(text: str) -> str:
    """A value's text without quotes, brackets and spaces: ``[1, 1]`` and ``1,1`` agree."""
    return re.sub(r"[\[\]'\" ]", "", text)


def _param_of(option: str, signature: Mapping[str, inspect.Parameter]) -> str | None:
    """The name of the command's parameter whose option is ``option`` (``--runs`` -> ``runs``,
    ``--nms`` of ``--nms/--no-nms``), or None."""
    for name, parameter in signature.items():
        decls = getattr(parameter.default, "param_decls", None) or ()
        longs = [half for d in decls for half in d.split("/") if half.startswith("--")]
        if (longs and option == longs[0]) or (
            not decls and option == "--" + name.replace("_", "-")
        ):
            return name
    return None


def option_given(ctx: typer.Context, param: str) -> bool:
    """Whether the option ``param`` was given on the command line (not left at its default)."""
    source = ctx.get_parameter_source(param)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def refuse_unheeded(ctx: typer.Context, params: tuple[str, ...], *, heeded: bool, what: str):
    """ConfigError naming the options of ``params`` given on the command line when nothing
    would heed them (``heeded`` false): they set ``what`` (it ends with how to use them)."""
    from yoloslim.errors import ConfigError

    given = [f"--{p.replace('_', '-')}" for p in params if option_given(ctx, p)]
    if given and not heeded:
        one = len(given) == 1
        raise ConfigError(
            f"{', '.join(given)} set{'s' if one else ''} {what}, or drop {'it' if one else 'them'}"
        )


RESUME_OPTIONS = ("resume", "data", "device", "workers", "threads", "json_path")


def resume_overrides(ctx: typer.Context, also: tuple[str, ...] = ()) -> dict[str, Any]:
    """The runtime settings a ``--resume`` may change (``--device``, ``--workers``) that were given.

    ``--resume DIR`` continues the saved run's settings; any option given besides
    :data:`RESUME_OPTIONS` and ``also`` would be ignored, so it is an error naming them.
    """
    from yoloslim.errors import ConfigError

    allowed = RESUME_OPTIONS + also
    extra = [p for p in ctx.params if p not in allowed and option_given(ctx, p)]
    if extra:
        names = ", ".join("--" + p.replace("_", "-") for p in extra)
        runtime = [p for p in ("device", "workers", "threads") if p in ctx.params]
        can = ["--" + p.replace("_", "-") for p in (*runtime, "data", *also)]
        # a flag (--exist-ok) has no saved value to repeat (audit43 clidoc F4)
        even = (
            ", even with the saved value"
            if any(not isinstance(ctx.params[p], bool) for p in extra)
            else ""
        )
        raise ConfigError(
            f"--resume continues the saved run's settings, so {names} "
            f"{'are' if len(extra) > 1 else 'is'} not taken{even} "
            f"(only {', '.join(can[:-1])} and {can[-1]} are; to train further, start a new "
            "run from DIR/best.pt)"
        )
    return {
        k: ctx.params[k]
        for k in ("device", "workers", "threads")
        if k in ctx.params and option_given(ctx, k)
    }


def layered(
    ctx: typer.Context | None,
    section: dict | None,
    flags: dict[str, Any],
    params: dict[str, str] | None = None,
    key: str | None = None,
) -> dict:
    """Settings from three layers: option defaults < ``section`` (from ``--config``) < options
    given on the command line; ``key`` names the section in the file (for its error when it
    is not a mapping).

    ``flags`` maps setting names to option values (``None`` values are skipped); ``params``
    names the command's parameter where it differs from the setting (``flops`` ->
    ``budget_flops``). Without a context (``ctx=None``) every flag counts as given.
    """
    params = params or {}
    if section is not None and not isinstance(section, dict):
        raise ConfigError(
            f"{key or 'the settings'}: must be a mapping (key: value lines), got {section!r}"
        )

    def given(key: str) -> bool:
        return ctx is None or option_given(ctx, params.get(key, key))

    out = {k: v for k, v in flags.items() if v is not None and not given(k)}
    out.update(section or {})
    out.update({k: v for k, v in flags.items() if v is not None and given(k)})
    return out


@contextlib.contextmanager
def config_file(path: str | Path | None, ctx: typer.Context | None = None):
    """A ConfigError raised while settings layered from a ``--config`` file are applied
    names that file (an unknown key can only have come from it), unless the setting it
    names was given as an option of ``ctx``'s command (then the value is the flag's)."""
    try:
        yield
    except ConfigError as e:
        if path is None or str(path) in str(e) or flag_given(e, ctx):
            raise
        raise ConfigError(f"{e} (settings read from --config {path})") from e


def check_device_from_file(device: str, config: Path | None, ctx: typer.Context) -> None:
    """Refuse a CUDA ``device`` a ``--config`` file gave (not ``--device``) on a machine
    without CUDA before the run starts, naming the file: the trainer's own refusal did not
    say where the value came from."""
    if config is None or option_given(ctx, "device"):
        return
    from yoloslim.train.trainer import resolve_device

    with config_file(config):
        resolve_device(device)


def flag_given(error: Exception, ctx: typer.Context | None) -> bool:
    """Whether the setting ``error`` names is an option of ``ctx``'s command given on the
    command line: ``TrainConfig.epochs=0`` (at any depth), a bare ``population=1`` that opens
    the message, or an option named in it (``budget.flops=-1.0 (--budget-flops)``). (Only
    the first was read: a bad flag beside a valid --config file was blamed on the file.)"""
    if ctx is None:
        return False
    text = str(error)
    names = set(re.findall(r"\((--[a-z][a-z0-9-]*)\)", text))
    names = {n[2:].replace("-", "_") for n in names}
    for pattern in (r"\b[A-Z]\w*Config\.(?:\w+\.)*?(\w+)=", r"^(\w+)="):
        found = re.search(pattern, text)
        if found:
            names.add(found.group(1))
    return any(n in ctx.params and option_given(ctx, n) for n in names)


def write_json(path: str | Path | None, obj: dict) -> None:
    """Write one JSON object (atomic rename) when ``path`` is given (a ``--json`` path, which
    :func:`check_json_target` checked when the options were parsed, and :func:`handle_errors`
    against the command's inputs before its work)."""
    if not path:
        return
    text = json.dumps(obj, indent=2, default=str) + "\n"
    if str(path) == STDOUT:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # | head -c 100: the reader has what it wanted
            drop_output(sys.stdout)
        return
    atomic_write_text(path, text)


# suffixes of what yoloslim writes into a run (checkpoints, artifacts, configs, drawings):
# a --json path with one would replace a file the same run writes (--json OUT/best.pt)
_NOT_A_REPORT = (
    ".pt", ".pth", ".onnx", ".xml", ".bin", ".torchscript", ".engine", ".pbtxt", ".yaml",
    ".yml", ".jsonl", ".md", ".png", ".jpg", ".jpeg", ".mp4",
)  # fmt: skip


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name one path (``~`` expanded, links and ``..`` resolved;
    neither needs to exist)."""
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _input_clash(p: Path, params: dict) -> str | None:
    """Why ``p`` is one of the command's inputs (another option naming the same file), or None."""
    if not p.exists():
        return None
    for name, value in params.items():
        if name == "json_path" or not isinstance(value, (str, Path)) or not str(value):
            continue
        other = Path(value).expanduser()
        try:
            same = other.is_file() and other.samefile(p)
        except OSError:
            same = False
        if same:
            return f"is the command's input (--{name.replace('_', '-')})"
    return None


@contextlib.contextmanager
def _looked_at(path: Path) -> Iterator[None]:
    """An OSError from looking at ``path`` in an option callback (a name longer than the
    file system takes: 255 bytes; a folder it may not search) as a usage error naming the
    path, exit 2: the callbacks run while the options are parsed, before :func:`handle_errors`
    could make it one line, so it would be a traceback."""
    try:
        yield
    except OSError as e:
        where = e.filename if e.filename is not None else path
        fix = "choose a shorter name" if e.errno == errno.ENAMETOOLONG else "choose another path"
        raise typer.BadParameter(f"{where}: {e.strerror or e}; {fix}") from e


def _check_record_target(p: Path, command: str, params: dict) -> None:
    """ConfigError when the ``--json`` path ``p`` is an existing run record of ``command``
    (:data:`REPORT_OWNERS`) other than the one this run writes into its own output folder
    (:data:`OWN_RECORDS`), where the report is the same: ``export --out B --json
    A/export_report.json`` would replace the record of the export in A, and the next export
    into A would forget A's artifacts. (A record of another command is refused when the
    options are parsed, by :func:`check_json_target`; ``nas`` judges its report itself.)"""
    owners = REPORT_OWNERS.get(p.name, ())
    if command not in owners or command not in OWN_RECORDS or not p.is_file():
        return
    if p.name not in OWN_RECORDS[command]:  # quantize's quant_config.json, say
        raise ConfigError(
            f"--json {p} is the {command} run's own {p.name}, not its report; it is not "
            "replaced by the report: name another file"
        )
    if not _folder_record(p, command):
        return  # an earlier --json report of the same name, away from any run: replaced
    out = params.get("out")
    own = Path(out).expanduser() / p.name if isinstance(out, (str, Path)) else None
    if own is not None:
        with contextlib.suppress(OSError):
            if own.exists() and own.samefile(p):
                return  # the record this run writes anyway: the same report
    mine = f", not of this one (--out {out} gets its own)" if own is not None else ""
    raise ConfigError(
        f"--json {p} is the record of the {command} run in {p.parent}{mine}; it is not "
        "replaced by the report: name another file, or leave --json out"
    )


def _folder_record(p: Path, command: str) -> bool:
    """Whether ``p``, a file named like ``command``'s record, is the record of a run in its
    folder (the folder holds that run's outputs), not a ``--json`` report kept elsewhere
    under the same name (``reports/export_report.json``, written again run after run)."""
    if command == "export":  # the folder holds an artifact the record lists
        try:
            data = json.loads(p.read_bytes())
            out, entries = Path(data["out"]), data["formats"].values()
            paths = [Path(e["path"]) for e in entries if isinstance(e, dict) and "path" in e]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return True  # unreadable: not known to be a copy, so kept
        for path in paths:
            rel = path.relative_to(out) if path.is_relative_to(out) else Path(path.name)
            if (p.parent / rel).exists():
                return True
        return False
    markers = {
        "prune": ("pruned.pt",),
        "quantize": ("quant_config.json",),
        "compress": ("recipe.yaml", "inputs.json"),
    }
    return any((p.parent / m).exists() for m in markers.get(command, ()))


def _writable(path: Path, what: str) -> None:
    """``path`` (to be created, or written into) can be: its nearest existing folder is a
    folder this process may write, and no file stands where a folder goes."""
    p = Path(path).expanduser().absolute()
    with _looked_at(p):
        _check_writable(p, what)


def _check_writable(p: Path, what: str) -> None:
    problem = dangling(p) if what == "folder" else None
    if problem:
        raise typer.BadParameter(f"{problem}; a folder cannot be made there")
    if not p.exists():
        problem = write_problem(p)
        if problem:
            raise typer.BadParameter(f"{problem}; {p} cannot be made")
        return
    if what == "folder" and not p.is_dir():
        raise typer.BadParameter(f"{p} is a file; a folder is written there")
    folder = p if p.is_dir() else p.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"{folder} is not writable")


def expand_home(path: Path | None) -> Path | None:
    """A path option or argument with a leading ``~`` expanded (a quoted ``'~/x'``, or
    ``--opt=~/x``, reaches the command as is), as every other path here is (a typer
    callback)."""
    return None if path is None else Path(path).expanduser()


def check_out_folder(path: Path | None) -> Path | None:
    """An output folder option is checked when the options are parsed, not after the work:
    not a file, and under a folder this process may write (a typer callback). A leading
    ``~`` is expanded here, so every command writes where the check looked."""
    if path is not None:
        path = Path(path).expanduser()
        _writable(path, "folder")
    return path


def check_run_folder(ctx: typer.Context, path: Path | None) -> Path | None:
    """:func:`check_out_folder` for ``train`` and ``distill``, whose ``--out`` a ``--resume
    DIR`` leaves unused: then it is not checked. (Click processes the options given on the
    command line first, defaults after, so a given ``--resume`` is known when the default
    ``--out`` comes.)"""
    if ctx.params.get("resume") is not None:
        return path
    return check_out_folder(path)


# JSON files yoloslim writes into a run's folder under names of their own, and the command
# whose run they record: a --json report of another command must not replace them, nor one
# of the same command unless it is the record this run writes into its own --out
# (OWN_RECORDS; generic names, report.json say, are left to whoever reuses them for their
# own reports)
REPORT_OWNERS = {
    "export_report.json": ("export",),
    "quant_report.json": ("quantize",),
    "prune_report.json": ("prune",),
    "nas_report.json": ("nas",),
    "reparam_report.json": ("compress",),
    "compress.json": ("compress",),
    "budget.json": ("compress",),
    "detections.json": ("predict",),
    "quant_config.json": ("quantize",),
}
# the records in REPORT_OWNERS that hold what the command's --json report holds, when this
# run writes them into its own --out: the one --json may name (the same report, twice)
OWN_RECORDS = {
    "export": ("export_report.json",),
    "quantize": ("quant_report.json",),
    "prune": ("prune_report.json",),
    "compress": ("compress.json", "budget.json"),
}
# JSON records a run keeps for itself and reads back (compress --resume): no report replaces them
# (what it is, the keys that tell it from a report of the same name)
RUN_RECORDS = {
    "stage.json": ("a compress run's record of a finished stage", {"stage", "model", "rows"}),
    "inputs.json": ("a compress run's record of its model and data", {"model", "data"}),
    # bench --report's, and a compress run's bench table (a budget run keeps it only there)
    "report.json": ("a bench report, which compress --resume reads back", {"rows"}),
}


def check_json_target(ctx: typer.Context, path: Path | None) -> Path | None:
    """``--json PATH`` is refused, before any work (a typer callback), when PATH is a folder
    or a file the report must not replace: one that holds no JSON (a data.yaml or a
    checkpoint given by mistake), COCO annotations (a dataset's ground truth), a JSON-lines
    file, a file another command wrote into its run's folder (:data:`REPORT_OWNERS`; one of
    this command's is judged by :func:`handle_errors`, once ``--out`` is known), or a
    record a run reads back (:data:`RUN_RECORDS`); a name with the suffix of what runs write
    or read (:data:`_NOT_A_REPORT`), a file of an artifact (inside a CoreML ``.mlpackage``, a
    TensorRT ``*.engine.json``), compress's record names, or a file it may not write."""
    # ``--json -``: the JSON is standard output, so what the command prints for people goes
    # to standard error (``yoloslim info m.onnx --json - | jq``)
    console.stderr = path is not None and str(path) == STDOUT
    if path is None or console.stderr:
        return path
    path = Path(path).expanduser()
    with _looked_at(path):
        _check_json_target(ctx, path)
    return path


def _check_json_target(ctx: typer.Context | None, p: Path) -> None:
    _writable(p, "file")
    if p.suffix.lower() in _NOT_A_REPORT:
        raise typer.BadParameter(
            f"{p}: {p.suffix} is a kind of file yoloslim runs write or read (checkpoints, "
            "artifacts, configs, reports, drawings); name the JSON report otherwise (*.json)"
        )
    # JSON that belongs to an artifact: replaced, the artifact no longer loads or deploys
    package = next((a for a in p.resolve().parents if a.suffix.lower() == ".mlpackage"), None)
    if package is not None:
        raise typer.BadParameter(
            f"{p} is inside the CoreML package {package} (its Manifest.json, its metadata); "
            "name a JSON report outside the package"
        )
    if p.name.lower().endswith(".engine.json"):
        raise typer.BadParameter(
            f"{p}: *.engine.json is a TensorRT engine's metadata, read beside its .engine; "
            "name the JSON report otherwise"
        )
    if p.name in RUN_RECORDS and ctx is not None and ctx.info_name == "compress":
        # the run writes these into its folder: the report would replace one, or be replaced
        raise typer.BadParameter(f"{p}: {p.name} is the name of {RUN_RECORDS[p.name][0]}")
    if p.is_file() and not os.access(p, os.W_OK):
        raise typer.BadParameter(f"{p} is not writable")
    # the command's own inputs: checked by handle_errors, once every option is parsed
    if not p.exists():
        return
    if p.is_dir():
        raise typer.BadParameter(f"{p} is a folder; name a .json file")
    if not p.is_file():  # reading it to judge it waited for a writer forever
        raise typer.BadParameter(f"{p} is no regular file (a pipe or a device); name a .json file")
    why = _kept_json(p, ctx.info_name if ctx is not None else None)
    if why:
        raise typer.BadParameter(f"{p} {why}; it is not replaced by the report")


def _kept_json(p: Path, command: str | None) -> str | None:
    """Why the existing file ``p`` is no report of ``command`` to replace, or None."""
    if p.suffix == ".jsonl":
        return "is a JSON-lines file (a latency cache?)"
    try:
        data = json.loads(p.read_bytes())
    except (ValueError, OSError):
        return "exists and holds no JSON (an input?)"
    if (
        isinstance(data, dict)
        and "images" in data
        and ("annotations" in data or "categories" in data)
    ):
        return "holds COCO annotations (a dataset's)"
    if (
        p.name in RUN_RECORDS
        and isinstance(data, dict)
        and RUN_RECORDS[p.name][1] <= set(data)
        and not (p.name == "report.json" and command == "bench")  # bench's own kind: replaced
    ):
        return f"is {RUN_RECORDS[p.name][0]}"
    owners = REPORT_OWNERS.get(p.name, (command,))
    if command not in owners:
        return f"is {' or '.join(f'the {o} run' for o in owners)}'s own {p.name}"
    return None


def refuse_config_in_run(config: Path | None, out: str | Path | None) -> None:
    """ConfigError when the ``--config`` file is one the run in ``out`` writes (an earlier
    run's train_config.yaml, given to start anew there): the run replaces it first."""
    from yoloslim.fileio import refuse_overwriting_input
    from yoloslim.train.run_folder import RUN_FILES

    if config is not None and out is not None:
        writes = [Path(out).expanduser() / name for name in RUN_FILES]
        hint = "copy it out of the run folder first, or give another out (--out)"
        refuse_overwriting_input(config, writes, arg="--config", hint=hint)


def command_line() -> str:
    """This command as a shell would take it back (each argument quoted where it needs to be)."""
    return shlex.join(["yoloslim", *sys.argv[1:]])


def resume_command(command: str, folder: str | Path) -> str:
    """``yoloslim COMMAND --resume FOLDER``, the folder quoted for a shell; under torchrun,
    launched the same way (the same number of processes continues the run exactly)."""
    return relaunch(f"yoloslim {command} --resume {shlex.quote(str(folder))}")


def resume_state(run_dir: Path, start_option: str = "--model") -> dict:
    """The checkpoint dict of ``run_dir/last.pt``, the run ``--resume`` continues;
    ``start_option`` is the command's option that starts a run from a checkpoint."""
    from yoloslim.errors import ConfigError
    from yoloslim.train.run_folder import read_last

    if Path(run_dir).is_file():
        folder = Path(run_dir).parent
        if (folder / "last.pt").is_file():
            raise ConfigError(f"--resume takes the run folder, not a file in it: --resume {folder}")
        raise ConfigError(
            f"--resume {run_dir}: takes a run folder (one holding last.pt), and {folder} holds "
            f"none; to train on from this checkpoint, start a run with {start_option} {run_dir}"
        )
    return read_last(Path(run_dir), where=f"--resume {run_dir}")
