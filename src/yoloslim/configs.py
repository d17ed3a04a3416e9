"""Settings dataclasses from plain mappings (YAML files, recipes, CLI ``--config``)."""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from yoloslim.errors import ConfigError

__all__ = [
    "DEFAULT_IMGSZ",
    "UniqueKeyLoader",
    "check_config",
    "check_flags",
    "check_imgsz",
    "check_field_types",
    "check_path",
    "brief",
    "exponent_hint",
    "from_mapping",
    "imgsz_problem",
    "MAX_IMGSZ",
    "int_problem",
    "load_mapping",
    "one_of",
    "plain_numbers",
    "read_yaml",
    "yaml_problem",
]


def from_mapping(cls: type, values: Any, where: str | None = None):
    """``cls(**values)`` for a frozen settings dataclass; unknown keys and bad values are
    :class:`ConfigError` naming ``where`` (default: the class name) and the allowed keys."""
    where = where or cls.__name__
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    values = dict(values)  # a read-only one too (audit48 review2 F4)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(names)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def check_field_types(
    obj: Any,
    *,
    ints: Sequence[str] = (),
    numbers: Sequence[str] = (),
    bools: Sequence[str] = (),
    optional: Sequence[str] = (),
    where: str | None = None,
) -> None:
    """Raise :class:`ConfigError` naming the field when a settings dataclass holds a value of
    the wrong type (from a YAML file: ``epochs: '10'``, ``progressive: 'false'``, which is
    true): ``ints`` take an integer, ``numbers`` an int or float, ``bools`` true or false
    (and no bool counts as a number); a name in ``optional`` may also be None. Checked before
    the range checks, which would fail with a TypeError or pass a truthy string. Messages
    name ``where.field`` (default: the class name)."""
    cls = where or type(obj).__name__
    for name in (*ints, *numbers, *bools):
        value = getattr(obj, name)
        if name in optional and value is None:
            continue
        if name in bools:
            if not isinstance(value, bool):
                raise ConfigError(f"{cls}.{name}={value!r} must be true or false")
            continue
        kinds = int if name in ints else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            what = "an integer" if kinds is int else "a number"
            raise ConfigError(f"{cls}.{name}={value!r} must be {what}{exponent_hint(value)}")


def check_ranges(obj: Any, checks: Sequence[tuple[bool, str, str]], where: str | None = None):
    """Raise :class:`ConfigError` for the first ``(ok, field, message)`` of ``checks`` that
    is not ok, naming ``where.field`` (default: the class name) and its value."""
    for ok, name, msg in checks:
        if not ok:
            prefix = where or type(obj).__name__
            raise ConfigError(f"{prefix}.{name}={getattr(obj, name)!r} {msg}")


def exponent_hint(value: Any) -> str:
    """`` (YAML reads 1e-3 as a string; write 1.0e-3)`` when ``value`` is such a string (YAML
    1.1 reads an exponent without a dot as text), for the error that wanted a number; else
    ""."""
    if isinstance(value, str) and "e" in value.lower() and _float_text(value):
        return " (YAML reads 1e-3 as a string; write 1.0e-3)"
    return ""


def _float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def brief(value: Any) -> str:
    """``repr(value)`` for an error message, or its type's name where that is long or spans
    lines: not a module's whole printout (a ``(model, checkpoint)`` tuple's was 600 KB,
    every weight: audit45 docs F1)."""
    shown = repr(value)
    if "\n" in shown or len(shown) > 80:
        if isinstance(value, tuple):
            return f"a tuple of {', '.join(type(v).__name__ for v in value[:4])}"
        return type(value).__name__
    return shown


def check_path(value: Any, name: str, what: str) -> None:
    """Raise :class:`ConfigError` naming ``name`` unless ``value`` is a path (a ``str`` or
    an ``os.PathLike``): ``None`` or a number given for one fails here, not as a
    ``TypeError`` deep inside; ``what`` says what the path is of. An empty string is
    refused too: it named the current folder, where a run wrote among the user's files."""
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"{name}={brief(value)}: expected {what}")
    if isinstance(value, str) and not value.strip():
        raise ConfigError(f"{name}={value!r}: an empty path (give '.' for the current folder)")


def check_config(value: Any, cls: type, name: str = "config") -> None:
    """Raise :class:`ConfigError` naming ``name`` unless ``value`` is a ``cls`` (a settings
    dataclass); a mapping gets the hint to read it with ``cls.from_dict``, where there is one."""
    if isinstance(value, cls):
        return
    hint = ""
    if isinstance(value, dict):
        reader = (
            f"{cls.__name__}.from_dict(d)" if hasattr(cls, "from_dict") else f"{cls.__name__}(**d)"
        )
        hint = f" ({reader} reads a mapping)"
    raise ConfigError(f"{name} must be a {cls.__name__}, got {type(value).__name__}{hint}")


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (it kept the last:
    ``{ratio: 0.3, ratio: 0.6}`` pruned at 0.6 without a word)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *defaults``: its keys may be given again, and then win
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                break  # PyYAML's own "found unhashable key" follows
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, error: type[Exception] = ConfigError, what: str = "config") -> Any:
    """The YAML document in the file ``path`` (UTF-8), read by :class:`UniqueKeyLoader`;
    ``error`` (naming the file, the line and the column) when it is no valid YAML or no
    text."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # noqa: S506
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML ({yaml_problem(e)})") from e
    except UnicodeDecodeError as e:
        raise error(f"{path}: not a text file, so no {what} ({e.reason})") from e


def yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: the line, the column and the problem."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def load_mapping(path: str | Path, what: str) -> dict:
    """A YAML file that must hold a mapping (of ``what`` fields); errors name the file."""
    path = Path(path).expanduser()  # `--config '~/cfg.yaml'`, as every other path option
    if path.is_dir():  # "does not exist" for a folder that does
        raise ConfigError(f"{path}: is a folder; a config file (YAML) is expected")
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    loaded = read_yaml(path) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} fields")
    return loaded


DEFAULT_IMGSZ = 320
"""The input size a command uses when neither its options nor its model name one."""


MAX_IMGSZ = 8192
"""The largest input size any command takes: one 8192 px image is 768 MiB as float32
before the first layer, and its activations many times that."""


def imgsz_problem(imgsz: Any) -> str | None:
    """Why ``imgsz`` is not an input size every detector here can take, or None when it is:
    the stride-32 feature maps must tile it, so a whole multiple of 32, at least 32; and at
    most :data:`MAX_IMGSZ` (a typo such as 64000 for 640 was an allocator's traceback)."""
    if isinstance(imgsz, bool) or not isinstance(imgsz, int):
        return "must be an integer, a multiple of 32 (the largest stride)"
    if imgsz < 32 or imgsz % 32:
        return "must be a multiple of 32 (the largest stride), >= 32"
    if imgsz > MAX_IMGSZ:
        gib = 3 * imgsz * imgsz * 4 / 2**30
        return (
            f"must be <= {MAX_IMGSZ} (one {imgsz} px image is {gib:.1f} GiB as float32 before "
            "the first layer)"
        )
    return None


def plain_numbers(value: Any) -> Any:
    """``value`` with numpy numbers and arrays, at any depth, as Python's (a sweep's
    ``np.arange`` values): settings are checked as, and saved as, plain YAML holds them."""
    if isinstance(value, dict):
        return {k: plain_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_numbers(v) for v in value)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()  # a scalar's is a Python number, an array's a list
    return value


def check_flags(**flags: Any) -> None:
    """ConfigError for a flag argument that is not a bool: ``exist_ok="no"`` is truthy, and
    replaced a training run."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} must be True or False")


def check_run_flags(resume: bool, exist_ok: bool) -> None:
    """ConfigError for both: a run folder's run continued and replaced (resume won without
    a word: audit48 api F12)."""
    if resume and exist_ok:
        raise ConfigError(
            "resume=True continues the run in out, exist_ok=True replaces it: give one of them"
        )


def int_problem(value: Any, low: int = 1, high: int | None = None) -> str | None:
    """Why ``value`` is not an integer in ``[low, high]`` (``high`` None: no upper end), or
    None when it is. Any integral number counts (a numpy integer too), a bool does not."""
    span = f">= {low}" if high is None else f"in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"must be an integer {span}"
    if value < low or (high is not None and value > high):
        return f"must be {span}"
    return None


def check_imgsz(imgsz: Any, name: str = "imgsz") -> None:
    """Raise :class:`ConfigError` naming ``name`` unless ``imgsz`` is None (the default
    size) or passes :func:`imgsz_problem`."""
    problem = None if imgsz is None else imgsz_problem(imgsz)
    if problem:
        raise ConfigError(f"{name}={imgsz!r} {problem}")


def one_of(choices: Sequence[str]) -> str:
    """``"a, b or c"``: the choices an error message names."""
    *rest, last = choices
    return f"{', '.join(rest)} or {last}" if rest else last
