"""staged(): a tool's output appears whole under its final name, or not at all."""

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest

from yoloslim.fileio import staged


def test_a_staged_file_and_its_companion_replace_the_old_ones_whole(tmp_path):
    xml = tmp_path / "model.xml"
    xml.write_text("old xml")
    xml.with_suffix(".bin").write_text("old bin")
    with staged(xml, (".bin",)) as tmp:
        assert tmp.name == "model.xml" and tmp.parent.parent == tmp_path
        tmp.write_text("new xml")
        tmp.with_suffix(".bin").write_text("new bin")
        assert xml.read_text() == "old xml"  # nothing changes until the block ends
    assert (xml.read_text(), xml.with_suffix(".bin").read_text()) == ("new xml", "new bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"]


def test_a_stop_between_the_moves_never_leaves_a_new_companion_beside_the_old_file(
    tmp_path, monkeypatch
):
    # the .bin moved first, then a kill: the old .xml beside the new .bin, which may load
    xml, bin_ = tmp_path / "model.xml", tmp_path / "model.bin"
    xml.write_text("old xml")
    bin_.write_text("old bin")
    real = Path.replace

    def stop_after_the_bin(self, target):
        real(self, target)
        if Path(target) == bin_:
            raise KeyboardInterrupt  # stands in for the SIGKILL right after that rename

    monkeypatch.setattr(Path, "replace", stop_after_the_bin)
    with pytest.raises(KeyboardInterrupt), staged(xml, (".bin",)) as tmp:
        tmp.write_text("new xml")
        tmp.with_suffix(".bin").write_text("new bin")
    assert bin_.read_text() == "new bin" and not xml.exists()  # missing, not mismatched


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_text("old")
    with pytest.raises(RuntimeError, match="converter died"), staged(onnx) as tmp:
        tmp.write_text("half a mod")
        raise RuntimeError("converter died")
    assert onnx.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_staged_folder_replaces_the_old_folder(tmp_path):
    pkg = tmp_path / "sub" / "model.mlpackage"
    pkg.mkdir(parents=True)
    (pkg / "stale.bin").write_text("old")
    with staged(pkg) as tmp:
        tmp.mkdir()
        (tmp / "weights.bin").write_text("new")
    assert sorted(p.name for p in pkg.iterdir()) == ["weights.bin"]
    assert [p.name for p in pkg.parent.iterdir()] == ["model.mlpackage"]


def test_a_failed_check_moves_nothing_and_names_the_final_path(tmp_path):
    from yoloslim.errors import ExportError

    onnx = tmp_path / "model.onnx"
    onnx.write_text("verified")
    seen = []

    def check(staged_path):
        seen.append((staged_path, staged_path.read_text(), onnx.read_text()))
        raise ExportError(f"{staged_path}: output differs from PyTorch")

    with pytest.raises(ExportError) as err, staged(onnx, check=check) as tmp:
        tmp.write_text("wrong")
    # checked while staged, before the move: the earlier file stays, the failed one is gone
    assert seen == [(seen[0][0], "wrong", "verified")] and seen[0][0] != onnx
    assert onnx.read_text() == "verified" and [p.name for p in tmp_path.iterdir()] == [onnx.name]
    assert str(err.value).startswith(f"{onnx}: output differs from PyTorch")  # not the temp's
    assert f"the artifact was discarded: {onnx} stays as it was" in str(err.value)
    # a first write that fails its check leaves nothing under the name
    with (
        pytest.raises(ExportError, match="nothing was written to"),
        staged(tmp_path / "new.onnx", check=check) as tmp,
    ):
        tmp.write_text("wrong")
    assert not (tmp_path / "new.onnx").exists()
    # one that passes moves into place
    with staged(onnx, check=lambda p: seen.append(p.read_text())) as tmp:
        tmp.write_text("better")
    assert onnx.read_text() == "better" and seen[-1] == "better"


def test_a_checks_warnings_name_the_artifact_not_its_staging_folder(tmp_path, caplog):
    # the demo's bf16 warning named .model.xml.yoloslim-XXXX/model.xml, gone a moment later
    import logging

    xml = tmp_path / "model_openvino" / "model.xml"
    log = logging.getLogger("yoloslim.export.verify")
    with (
        caplog.at_level(logging.WARNING),
        staged(xml, check=lambda p: log.warning("%s: slow", p)) as tmp,
    ):
        tmp.write_text("ir")
    assert caplog.messages == [f"{xml}: slow"]
    log.warning("%s: after", tmp)  # outside the check: as logged
    assert caplog.messages[-1] == f"{tmp}: after"


def test_a_companion_in_a_subfolder_is_checked_beside_it_and_moved_with_it(tmp_path):
    from yoloslim.errors import ConfigError

    config = tmp_path / "triton" / "m" / "config.pbtxt"
    config.parent.mkdir(parents=True)
    (config.parent / "notes.txt").write_text("mine")
    pairs = []

    def check(staged_config):  # sees the pair as it will lie
        pairs.append((staged_config / ".." / "1" / "model.onnx").resolve().read_text())

    with staged(config, ("1/model.onnx",), check=check) as tmp:
        (tmp.parent / "1").mkdir()
        (tmp.parent / "1" / "model.onnx").write_text("graph")
        tmp.write_text("config")
    assert pairs == ["graph"] and (config.parent / "1" / "model.onnx").read_text() == "graph"
    assert config.read_text() == "config" and (config.parent / "notes.txt").read_text() == "mine"
    # a file where its folder goes is named before the check runs
    other = tmp_path / "triton" / "n" / "config.pbtxt"
    other.parent.mkdir()
    (other.parent / "1").write_text("a file")
    with (
        pytest.raises(ConfigError, match=r"n/1 is a file in the way of the output; move it"),
        staged(other, ("1/model.onnx",), check=check) as tmp,
    ):
        (tmp.parent / "1").mkdir()
        (tmp.parent / "1" / "model.onnx").write_text("graph")
        tmp.write_text("config")
    assert len(pairs) == 1 and not other.exists()


def test_make_folder_names_a_file_in_the_way(tmp_path):
    from yoloslim.errors import ConfigError
    from yoloslim.fileio import make_folder

    (tmp_path / "triton").write_text("a file")
    with pytest.raises(ConfigError, match=r"triton is a file in the way of the output; move it"):
        make_folder(tmp_path / "triton" / "model" / "1")
    assert make_folder(tmp_path / "a" / "b").is_dir()


def test_a_folder_in_the_way_or_nothing_written_is_named(tmp_path):
    from yoloslim.errors import ConfigError, ExportError

    (tmp_path / "model.onnx").mkdir()
    with (
        pytest.raises(ConfigError, match=r"model.onnx is a folder in the way"),
        staged(tmp_path / "model.onnx") as tmp,
    ):
        tmp.write_text("graph")
    assert (tmp_path / "model.onnx").is_dir()
    with (
        pytest.raises(ExportError, match=r"model.xml: the converter wrote no model.bin"),
        staged(tmp_path / "model.xml", (".bin",)) as tmp,
    ):
        tmp.write_text("xml only")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


@contextlib.contextmanager
def _held_by_another_process(folder: Path):
    """folder_lock on ``folder``, held by a child process until the block ends."""
    hold = (
        "import sys; from yoloslim.fileio import folder_lock\n"
        f"with folder_lock({str(folder)!r}, 'train'):\n"
        "    print('held', flush=True); sys.stdin.readline()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        yield
    finally:
        proc.stdin.close()
        proc.wait(30)


def test_a_folder_another_run_writes_into_is_refused_and_freed_after(tmp_path):

    from yoloslim.errors import ConfigError
    from yoloslim.fileio import folder_lock

    out = tmp_path / "run"
    refused = pytest.raises(
        ConfigError, match=r"another yoloslim run is writing .* so this export cannot"
    )
    with folder_lock(out, "train"), refused, folder_lock(out, "export"):
        pass
    # another process holds it: refused here until that process ends (the kernel frees it)
    with _held_by_another_process(out):
        refused = pytest.raises(
            ConfigError, match=r"another yoloslim run is writing .* so this export cannot"
        )
        with refused, folder_lock(out, "export"):
            pass
    with folder_lock(out, "export"):
        assert out.is_dir() and list(out.iterdir()) == []  # no lock file left behind


def test_a_held_folder_is_refused_before_the_run_reads_its_inputs(tmp_path, monkeypatch):
    """train, distill, prune and compress probe the folder's lock first: a folder another run
    holds is refused before the model and data are read (here: missing ones, which would be
    the error otherwise), not after seconds of building them. The probe keeps nothing, and
    under torchrun there is none."""
    import yoloslim as ys
    from yoloslim.errors import ConfigError
    from yoloslim.fileio import folder_lock, refuse_if_held

    out = tmp_path / "run"
    out.mkdir()
    gone = str(tmp_path / "missing")
    runs = {
        "train": lambda: ys.train(gone + ".pt", gone + ".yaml", out=out, exist_ok=True),
        "distill": lambda: ys.distill(gone + ".pt", gone + "-t.pt", gone + ".yaml", out=out),
        "prune": lambda: ys.prune(gone + ".pt", gone + ".yaml", out=out, exist_ok=True),
        "compress": lambda: ys.run_recipe(gone + ".pt", gone + ".yaml", "cpu-int8", out=out),
        r"compress \(budget\)": lambda: ys.run_budget(
            gone + ".pt", gone + ".yaml", "cpu-int8", out=out, target_latency=5
        ),
    }
    with _held_by_another_process(out):
        for what, run in runs.items():
            with pytest.raises(ConfigError, match=rf"another yoloslim run .* so this {what} "):
                run()
        monkeypatch.setenv("WORLD_SIZE", "2")
        refuse_if_held(out, "train")  # torchrun: no probe
        monkeypatch.delenv("WORLD_SIZE")
    refuse_if_held(out, "train")  # free again
    refuse_if_held(tmp_path / "not-there", "train")  # nothing to probe
    with folder_lock(out, "train"), pytest.raises(ConfigError, match=r"so this prune cannot"):
        refuse_if_held(out, "prune")  # another holder in this process counts too
    with folder_lock(out, "train"):  # a probe left no lock behind
        assert list(out.iterdir()) == []
    for what, run in runs.items():  # free: each fails on its missing input instead
        with pytest.raises(Exception) as e:
            run()
        assert "another yoloslim run" not in str(e.value), what


def test_a_probe_of_the_folder_does_not_refuse_the_run_taking_its_lock(tmp_path, monkeypatch):
    """refuse_if_held's shared lock, held for microseconds by another run's probe, made a run
    taking the folder's lock at that moment fail as if a run wrote there (audit47 review F3:
    3250 of 68,000 tries): the lock is tried again a few times first."""
    import fcntl
    import os

    from yoloslim import fileio
    from yoloslim.errors import ConfigError

    out = tmp_path / "run"
    out.mkdir()
    probe = os.open(out, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a probe, caught holding its lock
    waits = []

    def probe_ends(seconds):  # the probe lets go while the run waits to try again
        waits.append(seconds)
        os.close(probe)

    monkeypatch.setattr(fileio.time, "sleep", probe_ends)
    with fileio.folder_lock(out, "train"):
        assert len(waits) == 1
    # a run that holds it: still refused once the tries are spent
    monkeypatch.setattr(fileio.time, "sleep", waits.append)
    refused = pytest.raises(ConfigError, match="so this export")
    with fileio.folder_lock(out, "train"), refused, fileio.folder_lock(out, "export"):
        pass
    assert len(waits) == 4


def test_a_file_where_the_run_folder_goes_is_a_config_error(tmp_path):
    """Every run folder (train, prune, quantize, export, compress) goes through folder_lock."""
    from yoloslim.errors import ConfigError
    from yoloslim.fileio import folder_lock

    f = tmp_path / "afile.txt"
    f.write_text("x")
    file_refused = pytest.raises(ConfigError, match=r"afile.txt' is an existing file; the prune")
    with file_refused, folder_lock(f, "prune"):
        pass
    parent_refused = pytest.raises(ConfigError, match=r"afile.txt/run': cannot create the folder")
    with parent_refused, folder_lock(f / "run", "compress"):
        pass
    assert f.read_text() == "x"
    # a link that points nowhere, as the folder or above it: said so ("File exists" was all)
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    for folder in (tmp_path / "gone", tmp_path / "gone" / "run"):
        gone = pytest.raises(
            ConfigError, match=r"gone is a link to .*nowhere, which does not exist"
        )
        with gone, folder_lock(folder, "bench"):
            pass
    assert not (tmp_path / "nowhere").exists()


def test_an_output_folder_option_at_a_dangling_link_is_refused_before_any_work(tmp_path, capsys):
    from yoloslim.cli.main import main

    (tmp_path / "b").symlink_to(tmp_path / "nowhere")
    assert main(["bench", str(tmp_path / "m.onnx"), "--report", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "is a link to" in err and "which does not exist; a folder cannot be made there" in err


def test_staging_folders_a_killed_run_left_are_removed_and_nothing_else(tmp_path):
    import os
    import tempfile

    from yoloslim.fileio import STAGING_PREFIX, remove_stale_staging, staged

    # what a SIGKILL inside staged() leaves: its private folder, at any depth an export uses
    prefix = STAGING_PREFIX.format("model.onnx")
    stale = []
    for parent in (tmp_path, tmp_path / "model_openvino", tmp_path / "triton" / "m" / "1"):
        parent.mkdir(parents=True, exist_ok=True)
        stale.append(Path(tempfile.mkdtemp(dir=parent, prefix=prefix)))
    kept = [tmp_path / f"{prefix}abcdefgh", tmp_path / f"{prefix}short", tmp_path / "model.onnx"]
    kept[0].mkdir(mode=0o755)  # not private: not staged()'s
    os.chmod(kept[0], 0o755)
    kept[1].mkdir(mode=0o700)  # not an 8-character suffix
    kept[2].write_text("the artifact")
    # what an earlier version left for an artifact (.NAME-XXXXXXXX) is still cleaned up
    stale.append(Path(tempfile.mkdtemp(dir=tmp_path, prefix=".model.xml-")))
    # a user's own private hidden folders, named like the old staging folders: deleted before
    for name in (".venv-research", ".npm-packages"):
        kept.append(tmp_path / "sub" / name)
        kept[-1].mkdir(parents=True)
        os.chmod(kept[-1], 0o700)
        (kept[-1] / "keep.txt").write_text("important")
    # another run's folder below (an export into tmp_path/v2 beside this one): its staging is live
    (tmp_path / "v2").mkdir()
    live = Path(tempfile.mkdtemp(dir=tmp_path / "v2", prefix=prefix))
    with _held_by_another_process(tmp_path / "v2"):
        assert sorted(remove_stale_staging(tmp_path)) == sorted(stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in [*kept, live])
    with staged(tmp_path / "x.onnx") as tmp:  # a live one, as the lock holder's own, works
        tmp.write_text("new")
    assert (tmp_path / "x.onnx").read_text() == "new"


def test_scratch_folders_of_killed_exports_go_once_a_day_old(tmp_path, monkeypatch):
    import os
    import tempfile
    import time

    from yoloslim.export import common

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old, fresh = tmp_path / "yoloslim-export-old", tmp_path / "yoloslim-export-new"
    other = tmp_path / "someone-else-old"
    for p in (old, fresh, other):
        p.mkdir()
        (p / "model.onnx").write_text("x")
    day_ago = time.time() - 25 * 3600
    for p in (old, other):
        os.utime(p, (day_ago, day_ago))
    # an export's first scratch file clears them, beside its own new folder
    ctx = common.ExportContext(model=None, names=["a"], imgsz=64, out=tmp_path / "out")
    mine = ctx.scratch_path("model.onnx").parent
    assert not old.exists() and fresh.exists() and other.exists() and mine.is_dir()
    ctx.cleanup()
    assert not mine.exists()


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_an_atomic_write_stopped_midway_keeps_the_old_file_and_names_the_new_one(
    tmp_path, stopped_writes, stop
):
    from yoloslim import fileio

    target = tmp_path / "report.json"
    target.write_text("old")
    stopped_writes(stop)  # a Ctrl-C, or a full disk, halfway through the write
    with pytest.raises(type(stop)) as err:
        fileio.atomic_write_text(target, "new and longer")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "report.json"
    ]
    if isinstance(stop, OSError):  # the file meant, not the temp one: one error line
        assert err.value.filename == str(target) and err.value.errno == 28


def test_two_writers_of_one_file_use_temp_files_of_their_own(tmp_path, monkeypatch):
    # a fixed .NAME.tmp let one writer's rename move the other's half-written file into place
    import tempfile

    from yoloslim import fileio

    names = []
    real = tempfile.mkstemp

    def spy(*a, **kw):
        fd, name = real(*a, **kw)
        names.append(name)
        return fd, name

    monkeypatch.setattr(fileio.tempfile, "mkstemp", spy)
    fileio.atomic_write_text(tmp_path / "a.json", "1")
    fileio.atomic_write_text(tmp_path / "a.json", "2")
    assert len(set(names)) == 2 and (tmp_path / "a.json").read_text() == "2"


def test_the_folders_a_failed_call_made_go_and_no_other(tmp_path):
    # audit30 review L1: a failed `bench --report a/b/c` left a/ and a/b/
    from yoloslim.fileio import first_missing, removed_if_left_empty

    (tmp_path / "kept").mkdir()
    deep = tmp_path / "kept" / "a" / "b" / "c"
    made = first_missing(deep)
    assert made == tmp_path / "kept" / "a" and first_missing(tmp_path / "kept") is False
    with pytest.raises(RuntimeError), removed_if_left_empty(deep, made):
        deep.mkdir(parents=True)
        raise RuntimeError("failed")
    assert list((tmp_path / "kept").iterdir()) == []  # a/ and a/b/ too; kept/ was there
    # a folder on the way that is no longer empty stays, with what is in it
    with pytest.raises(RuntimeError), removed_if_left_empty(deep, made):
        deep.mkdir(parents=True)
        (deep.parent / "notes.txt").write_text("mine")
        raise RuntimeError("failed")
    assert not deep.exists() and (deep.parent / "notes.txt").is_file()


def test_an_error_of_a_nested_atomic_write_keeps_its_files_name(tmp_path, monkeypatch):
    # nas writes its two files through nested atomic_file: the outer one named the inner's
    # full disk after its own file (audit48 review2 F1)
    import yoloslim.fileio as fileio

    real = fileio.os.replace

    def full(src, dst):
        if Path(dst).name == "inner.yaml":
            raise OSError(28, "No space left on device", src)
        return real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", full)
    with (
        pytest.raises(OSError) as e,
        fileio.atomic_file(tmp_path / "outer.json") as a,
        fileio.atomic_file(tmp_path / "inner.yaml") as b,
    ):
        a.write(b"{}"), b.write(b"x")
    assert e.value.filename == str(tmp_path / "inner.yaml") and e.value.errno == 28
    assert list(tmp_path.iterdir()) == []  # neither moved, no temp left
    # its own write's error is named after it, as before
    with pytest.raises(OSError) as e, fileio.atomic_file(tmp_path / "outer.json"):
        raise OSError(28, "No space left on device")
    assert e.value.filename == str(tmp_path / "outer.json")


def test_an_atomic_write_at_a_link_replaces_the_link_and_leaves_what_it_pointed_to(tmp_path):
    # a link into a content-addressed cache (DVC's symlink cache) must not have the cached
    # file changed under its hash (audit45 review M1)
    from yoloslim.fileio import atomic_write_text

    (tmp_path / "cache").mkdir()
    cached = tmp_path / "cache" / "ab12"
    cached.write_text("old")
    link = tmp_path / "best.txt"
    link.symlink_to(cached)
    atomic_write_text(link, "new")
    assert not link.is_symlink() and link.read_text() == "new" and cached.read_text() == "old"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["ab12"]


def test_a_file_appended_to_at_a_link_becomes_a_file_of_its_own_first(tmp_path):
    # a resumed run's metrics.jsonl rows went into a DVC cache's file through its link
    # (audit45 review2 N1)
    from yoloslim.fileio import appendable

    cached = tmp_path / "cache" / "42f9"
    cached.parent.mkdir()
    cached.write_text('{"epoch": 0}\n')
    link = tmp_path / "metrics.jsonl"
    link.symlink_to(cached)
    with appendable(link).open("a") as f:
        f.write('{"epoch": 1}\n')
    assert not link.is_symlink() and link.read_text() == '{"epoch": 0}\n{"epoch": 1}\n'
    assert cached.read_text() == '{"epoch": 0}\n'
    assert appendable(link) == link  # a plain file: as it is
