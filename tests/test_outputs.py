"""Output folders: refusals, lock, staging, commit, recovery (shmi_spark.io.outputs), and ``shmi synth --out``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shmi_spark.errors import InputError
from shmi_spark.io.filesystems import HadoopFS, LocalFS
from shmi_spark.io.outputs import MARKER, STAGING_MARKER, OutputFolder, check_destination, read_marker

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = "20260101T000000Z-0123abcd"

# A process that enters an output folder, writes a file, reports its staging folder, then sleeps.
HOLDER = """
import sys, time
from shmi_spark.io.outputs import OutputFolder
with OutputFolder(sys.argv[1], command="test holder") as out:
    with open(out.staging + "/partial.csv", "w") as f:
        f.write("half written")
    print(out.staging, flush=True)
    time.sleep(120)
"""


def _hashes(root: Path) -> dict:
    """Relative path → sha256 of every file under root (hidden ones included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _write(root: Path, files: dict) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _output(dest: Path, files: dict, kind: str = "run", **kw) -> dict:
    """Commit an output holding ``files`` to ``dest``; return its marker."""
    with OutputFolder(str(dest), kind=kind, warn=kw.pop("warn", _no_warn), **kw) as out:
        _write(Path(out.staging), files)
        return out.commit({"test": True})


def _no_warn(message: str) -> None:
    raise AssertionError(f"unexpected warning: {message}")


def _beside(dest: Path) -> list[str]:
    """Our bookkeeping entries beside dest (lock, staging, old)."""
    return sorted(n for n in os.listdir(dest.parent) if n.startswith(f".{dest.name}."))


def _holder(dest: Path) -> tuple[subprocess.Popen, str]:
    """Start a process holding dest's lock; return it and its staging folder."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(dest)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    staging = proc.stdout.readline().strip()
    assert staging, "the holder process did not start"
    return proc, staging


FIRST = {"shmi_trust.csv": b"A,1\n", "model/p1/coefficients.csv": b"x" * 100, "spells/_SUCCESS": b""}
SECOND = {"shmi_trust.csv": b"B,2\n", "summary.json": b"{}"}


# ------------------------------------------------------------------ refusals

@pytest.mark.parametrize("case", ["equal", "inside", "contains", "symlink", "file_input", "file_uri"])
def test_refuses_output_overlapping_an_input(tmp_path, case):
    data = tmp_path / "data"
    _write(data, {"hes_apc/part-0.csv": b"HESID\n1\n", "reference/trusts.csv": b"PROCODE3\nAAA\n"})
    before = _hashes(tmp_path)
    inputs = [str(data), ""]
    dest = {"equal": data, "inside": data / "out", "contains": tmp_path, "symlink": tmp_path / "link",
            "file_input": data / "reference", "file_uri": data / "out"}[case]
    if case == "symlink":
        (tmp_path / "link").symlink_to(data)
        before = _hashes(tmp_path)
    if case == "file_input":
        inputs = [str(data / "reference" / "trusts.csv")]
    if case == "file_uri":
        inputs = [f"file://{data}"]
    with pytest.raises(InputError, match="overlaps the input") as err:
        check_destination(str(dest), inputs)
    assert str(dest) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="overlaps the input"):
        OutputFolder(str(dest), inputs).__enter__()
    assert _hashes(tmp_path) == before
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".lock") or ".staging-" in n]


def test_uri_overlap_is_by_normalised_prefix_on_a_slash_boundary():
    with pytest.raises(InputError, match="overlaps"):
        check_destination("hdfs://nn/data/out", ["hdfs://nn/data"])
    with pytest.raises(InputError, match="overlaps"):
        check_destination("HDFS://NN/data/./x//", ["hdfs://nn/data/x/y"])
    with pytest.raises(InputError, match="overlaps"):
        check_destination("s3a://bucket/world", ["s3a://bucket/world/hes_apc", "hdfs://nn/x"])
    # not overlapping: a sibling sharing a prefix, another authority, another scheme, a local path
    check_destination("hdfs://nn/data2", ["hdfs://nn/data"])
    check_destination("hdfs://other/data/out", ["hdfs://nn/data"])
    check_destination("s3a://nn/data/out", ["hdfs://nn/data"])
    check_destination("hdfs://nn/data/out", ["/data"])


def test_refuses_a_file_as_destination(tmp_path):
    dest = tmp_path / "results.csv"
    dest.write_bytes(b"keep me")
    with pytest.raises(InputError, match="is a file, not a folder") as err:
        check_destination(str(dest), [])
    assert str(dest) in str(err.value)
    assert dest.read_bytes() == b"keep me" and _beside(dest) == []


def test_refuses_a_users_folder_and_never_touches_it(tmp_path):
    dest = tmp_path / "mine"
    _write(dest, {"thesis.docx": b"years of work", "figs/f1.png": b"\x89PNG"})
    before = _hashes(tmp_path)
    with pytest.raises(InputError, match="not an output of shmi.*never deleted or overwritten.*empty or new"):
        check_destination(str(dest), [])
    for kind in ("run", "world"):
        with pytest.raises(InputError, match=str(dest)):
            OutputFolder(str(dest), kind=kind).__enter__()
    assert _hashes(tmp_path) == before and _beside(dest) == []


def test_refuses_an_earlier_output_holding_a_foreign_file(tmp_path):
    dest = tmp_path / "out"
    _output(dest, FIRST)
    for rel in ("notes.txt", "model/p1/my_analysis.R"):
        _write(dest, {rel: b"mine"})
        before = _hashes(tmp_path)
        with pytest.raises(InputError, match=f"{dest}/{rel}, which was not written by shmi; move it away"):
            check_destination(str(dest), [])
        with pytest.raises(InputError, match="not written by shmi"):
            _output(dest, SECOND)
        assert _hashes(tmp_path) == before and _beside(dest) == []
        (dest / rel).unlink()
    # an empty folder holds nothing to lose
    (dest / "empty").mkdir()
    check_destination(str(dest), [])


def test_refuses_an_earlier_output_of_the_other_kind(tmp_path):
    run, world = tmp_path / "run", tmp_path / "world"
    _output(run, FIRST, kind="run")
    _output(world, {"hes_apc/x.parquet": b"pq"}, kind="world")
    before = _hashes(tmp_path)
    with pytest.raises(InputError, match="holds a shmi run output, not a world output"):
        check_destination(str(run), [], kind="world")
    with pytest.raises(InputError, match="holds a shmi world output, not a run output"):
        _output(world, SECOND, kind="run")
    assert _hashes(tmp_path) == before


def test_refuses_a_non_empty_destination_when_overwrite_is_off(tmp_path):
    dest = tmp_path / "out"
    _output(dest, FIRST)
    before = _hashes(tmp_path)
    with pytest.raises(InputError, match="overwriting is off"):
        check_destination(str(dest), [], overwrite=False)
    with pytest.raises(InputError, match="overwriting is off"):
        _output(dest, SECOND, overwrite=False)
    assert _hashes(tmp_path) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    _output(empty, SECOND, overwrite=False)
    assert read_marker(str(empty))["files"] == {"shmi_trust.csv": 4, "summary.json": 2}


def test_refuses_a_destination_under_a_file(tmp_path):
    blocker = tmp_path / "somefile"
    blocker.write_bytes(b"x")
    for dest in (blocker / "sub", blocker / "sub" / "deeper"):
        with pytest.raises(InputError, match=f"{blocker} is not a folder"):
            check_destination(str(dest), [])
    assert blocker.read_bytes() == b"x"


def test_refuses_a_root_and_a_bad_kind(tmp_path):
    with pytest.raises(InputError, match="root of a filesystem"):
        check_destination("/", [])
    with pytest.raises(ValueError):
        check_destination(str(tmp_path / "x"), [], kind="report")


# ------------------------------------------------------------------ commit

def test_commit_into_an_absent_destination_with_a_full_manifest(tmp_path):
    dest = tmp_path / "new" / "deeper" / "out"
    with OutputFolder(str(dest), command="shmi run --out x", warn=_no_warn) as out:
        staging = Path(out.staging)
        assert staging.parent == dest.parent and staging.name == f".out.staging-{out.run_id}"
        assert (staging / STAGING_MARKER).read_text() == out.run_id
        lock = json.loads((dest.parent / ".out.lock").read_text())
        assert lock["run_id"] == out.run_id and lock["pid"] == os.getpid()
        assert lock["host"] == socket.gethostname() and lock["command"] == "shmi run --out x"
        assert lock["started_utc"]
        assert not dest.exists()
        _write(staging, {**FIRST, "a/b/c/deep.bin": b"\0" * 1234})
        marker = out.commit({"config_hash": "abc"})
    files = {"a/b/c/deep.bin": 1234, "model/p1/coefficients.csv": 100, "shmi_trust.csv": 4, "spells/_SUCCESS": 0}
    assert marker["files"] == files
    on_disk = read_marker(str(dest))
    assert on_disk == marker
    assert on_disk["kind"] == "run" and on_disk["fingerprint"] == {"config_hash": "abc"}
    assert on_disk["run_id"] == out.run_id and on_disk["created_utc"]
    assert sorted(_hashes(dest)) == sorted([*files, MARKER])
    assert _beside(dest) == []


def test_commit_into_an_empty_destination(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    _output(dest, FIRST)
    assert (dest / "shmi_trust.csv").read_bytes() == b"A,1\n" and _beside(dest) == []


class SpyFS(LocalFS):
    """LocalFS recording exchanges and renames."""

    def __init__(self, atomic_exchange: bool = True) -> None:
        super().__init__(atomic_exchange)
        self.calls: list = []

    def exchange(self, a: str, b: str) -> bool:
        done = super().exchange(a, b)
        self.calls.append(("exchange", done))
        return done

    def rename(self, src: str, dst: str) -> None:
        self.calls.append(("rename", Path(src).name, Path(dst).name))
        super().rename(src, dst)


@pytest.mark.parametrize("atomic", [True, False], ids=["exchange", "fallback"])
def test_commit_replaces_an_earlier_output(tmp_path, atomic):
    dest = tmp_path / "out"
    _output(dest, FIRST)
    fs = SpyFS(atomic_exchange=atomic)
    with OutputFolder(str(dest), fs=fs, warn=_no_warn) as out:
        _write(Path(out.staging), SECOND)
        assert (dest / "shmi_trust.csv").read_bytes() == b"A,1\n"  # readable until commit
        out.commit({})
    assert sorted(_hashes(dest)) == sorted([*SECOND, MARKER])
    assert (dest / "shmi_trust.csv").read_bytes() == b"B,2\n" and _beside(dest) == []
    if atomic:
        assert fs.calls == [("exchange", True)]
    else:
        assert fs.calls == [("exchange", False), ("rename", "out", f".out.old-{out.run_id}"),
                            ("rename", f".out.staging-{out.run_id}", "out")]


def test_file_uri_destination_gives_a_file_uri_staging(tmp_path):
    dest = f"file://{tmp_path}/out"
    with OutputFolder(dest, warn=_no_warn) as out:
        assert out.staging.startswith("file:///") and out.staging.endswith(f"/.out.staging-{out.run_id}")
        Path(out.staging[len("file://"):], "x.csv").write_bytes(b"1")
        out.commit({})
    assert read_marker(dest)["files"] == {"x.csv": 1}


# ------------------------------------------------------------------ failures

@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt, None])
def test_failed_run_leaves_the_earlier_output_byte_identical(tmp_path, error):
    dest = tmp_path / "out"
    _output(dest, FIRST)
    before = _hashes(tmp_path)

    def run():
        with OutputFolder(str(dest), warn=_no_warn) as out:
            _write(Path(out.staging), SECOND)
            if error is not None:
                raise error("boom")
            # leaving without commit() discards the run too

    if error is None:
        run()
    else:
        with pytest.raises(error):
            run()
    assert _hashes(tmp_path) == before and _beside(dest) == []


def test_commit_refused_if_a_foreign_file_appeared_during_the_run(tmp_path):
    dest = tmp_path / "out"
    _output(dest, FIRST)
    with pytest.raises(InputError, match="late.txt, which was not written by shmi"):
        with OutputFolder(str(dest), warn=_no_warn) as out:
            _write(Path(out.staging), SECOND)
            (dest / "late.txt").write_bytes(b"mine")
            out.commit({})
    assert (dest / "late.txt").read_bytes() == b"mine" and (dest / "shmi_trust.csv").read_bytes() == b"A,1\n"
    assert _beside(dest) == []


def test_killed_run_leaves_the_earlier_output_and_the_next_run_takes_over(tmp_path):
    dest = tmp_path / "out"
    _output(dest, FIRST)
    before = _hashes(dest)
    proc, dead_staging = _holder(dest)
    try:
        assert Path(dead_staging, "partial.csv").is_file()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert _hashes(dest) == before
    assert (dest.parent / ".out.lock").is_file() and Path(dead_staging).is_dir()
    warnings: list[str] = []
    with OutputFolder(str(dest), warn=warnings.append) as out:
        assert len(warnings) == 1 and "taking over the stale lock" in warnings[0]
        assert f"pid {proc.pid}" in warnings[0] and "no longer running" in warnings[0]
        assert not Path(dead_staging).exists()
        _write(Path(out.staging), SECOND)
        out.commit({})
    assert (dest / "shmi_trust.csv").read_bytes() == b"B,2\n" and _beside(dest) == []


def test_a_live_holder_makes_a_second_run_fail_fast(tmp_path):
    dest = tmp_path / "out"
    _output(dest, FIRST)
    before = _hashes(dest)
    proc, staging = _holder(dest)
    try:
        lock = dest.parent / ".out.lock"
        holder = json.loads(lock.read_text())
        with pytest.raises(InputError) as err:
            _output(dest, SECOND)
        msg = str(err.value)
        assert str(lock) in msg and f"pid {proc.pid}" in msg and holder["run_id"] in msg
        assert socket.gethostname() in msg and holder["started_utc"] in msg and "\n" not in msg
        assert Path(staging).is_dir() and json.loads(lock.read_text()) == holder  # the holder's run untouched
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert _hashes(dest) == before


def _lock(dest: Path, host: str, age: float, pid: int = 1, raw: bytes | None = None) -> Path:
    lock = dest.parent / f".{dest.name}.lock"
    lock.write_bytes(raw if raw is not None else json.dumps(
        {"run_id": RUN_ID, "pid": pid, "host": host, "started_utc": "2026-01-01T00:00:00+00:00",
         "command": "x"}).encode())
    then = time.time() - age
    os.utime(lock, (then, then))
    return lock


def test_lock_of_another_host_goes_stale_by_mtime(tmp_path):
    dest = tmp_path / "out"
    _lock(dest, "elsewhere", age=5)
    with pytest.raises(InputError, match=f"held by run {RUN_ID} \\(pid 1 on elsewhere"):
        _output(dest, FIRST, stale_seconds=60)
    _lock(dest, "elsewhere", age=120)
    warnings: list[str] = []
    _output(dest, FIRST, stale_seconds=60, warn=warnings.append)
    assert len(warnings) == 1 and "not refreshed for 120 s" in warnings[0]
    assert _beside(dest) == []


def test_unreadable_lock_is_held_until_stale(tmp_path):
    dest = tmp_path / "out"
    _lock(dest, "", age=1, raw=b"")
    with pytest.raises(InputError, match="held by an unknown run"):
        _output(dest, FIRST)
    _lock(dest, "", age=30, raw=b"{trunc")  # locks are written at once: unreadable and 30 s old is a crash
    warnings: list[str] = []
    _output(dest, FIRST, warn=warnings.append)
    assert len(warnings) == 1 and "unreadable and 30 s old" in warnings[0] and _beside(dest) == []


def test_a_local_lock_never_exists_half_written(tmp_path):
    """create_exclusive writes a temporary file and links it into place: all or nothing, no leftovers."""
    from shmi_spark.io.filesystems import LocalFS

    fs, path = LocalFS(), str(tmp_path / ".out.lock")
    assert fs.create_exclusive(path, b'{"run_id": "a"}')
    assert not fs.create_exclusive(path, b'{"run_id": "b"}')
    assert Path(path).read_bytes() == b'{"run_id": "a"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock"]
    # a process killed between writing its temporary file and linking it leaves the file: removed next time
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f".out.lock.{int(dead.stdout)}-123.tmp"
    left.write_bytes(b'{"run_id": "killed"}')
    foreign = tmp_path / ".out.lock.1-5.tmp"  # pid 1 is alive: not touched
    foreign.write_bytes(b'{"run_id": "x"}')
    os.remove(path)
    assert fs.create_exclusive(path, b'{"run_id": "c"}')
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", ".out.lock.1-5.tmp"]


def test_heartbeat_refreshes_the_lock_and_release_keeps_a_lock_not_ours(tmp_path):
    dest = tmp_path / "out"
    with OutputFolder(str(dest), stale_seconds=0.5, warn=_no_warn) as out:
        lock = Path(out.lock_path)
        os.utime(lock, (1, 1))
        time.sleep(0.3)
        assert time.time() - lock.stat().st_mtime < 5
        # another run took the lock over (e.g. judged ours stale from another host)
        lock.write_text(json.dumps({"run_id": "someone-else"}))
    assert json.loads(lock.read_text()) == {"run_id": "someone-else"}


# ------------------------------------------------------------------ leftovers and recovery

def test_recovers_an_earlier_output_from_a_half_done_swap(tmp_path):
    dest = tmp_path / "out"
    _output(dest, FIRST)
    before = _hashes(dest)
    old = tmp_path / f".out.old-{RUN_ID}"
    dest.rename(old)                           # killed after dest → old ...
    dead = tmp_path / f".out.staging-{RUN_ID}"
    _write(dead, {**SECOND, MARKER: json.dumps({"kind": "run", "run_id": RUN_ID, "files": {}}).encode()})
    warnings: list[str] = []
    with OutputFolder(str(dest), warn=warnings.append) as out:  # ... and before staging → dest
        assert len(warnings) == 1 and "restored the previous output" in warnings[0] and str(old) in warnings[0]
        assert _hashes(dest) == before and not old.exists() and not dead.exists()
        assert _beside(dest) == [".out.lock", f".out.staging-{out.run_id}"]
    assert _hashes(dest) == before and _beside(dest) == []


def test_cleans_only_leftovers_that_carry_our_marker(tmp_path):
    dest = tmp_path / "out"
    _output(dest, FIRST)
    old = tmp_path / f".out.old-{RUN_ID}"        # killed after the swap, before deleting the old output
    _output(tmp_path / "elsewhere", FIRST)
    (tmp_path / "elsewhere").rename(old)
    dead = tmp_path / f".out.staging-20260101T000001Z-0123abcd"
    _write(dead, {STAGING_MARKER: b"x", "part.csv": b"1"})
    stranger = tmp_path / f".out.staging-20260101T000002Z-0123abcd"
    _write(stranger, {"precious.txt": b"not ours"})
    other_dest = tmp_path / ".out.staging-x.staging-20260101T000003Z-0123abcd"
    _write(other_dest, {STAGING_MARKER: b"x"})
    warnings: list[str] = []
    with OutputFolder(str(dest), warn=warnings.append) as out:
        _write(Path(out.staging), SECOND)
        out.commit({})
    assert not old.exists() and not dead.exists()
    assert (stranger / "precious.txt").read_bytes() == b"not ours" and other_dest.exists()
    assert len(warnings) == 1 and f"left {stranger} alone" in warnings[0]


# ------------------------------------------------------------------ Hadoop backend

def test_hadoop_backend_on_a_file_uri(spark, tmp_path):
    fs = HadoopFS(spark)
    dest = f"file://{tmp_path}/out"
    out_dir = tmp_path / "out"
    with OutputFolder(dest, fs=fs, warn=_no_warn) as out:
        assert out.staging == f"file://{tmp_path}/.out.staging-{out.run_id}"
        with pytest.raises(InputError, match=r"\.out\.lock is held by run"):
            OutputFolder(dest, fs=fs, warn=_no_warn).__enter__()
        spark.createDataFrame([(1, "a")], "id int, v string").coalesce(1).write.parquet(f"{out.staging}/t")
        marker = out.commit({"n": 1})
    assert read_marker(dest, fs=fs) == marker == read_marker(str(out_dir))
    assert any(k.startswith("t/part-") for k in marker["files"]) and "t/_SUCCESS" in marker["files"]
    first = _hashes(out_dir)
    # a foreign file refuses; a failing run leaves the output; a second run replaces it (rename fallback)
    (out_dir / "mine.txt").write_bytes(b"mine")
    with pytest.raises(InputError, match="mine.txt, which was not written by shmi"):
        check_destination(dest, [], fs=fs)
    (out_dir / "mine.txt").unlink()
    with pytest.raises(RuntimeError):
        with OutputFolder(dest, fs=fs, warn=_no_warn) as out:
            fs.write(f"{out.staging}/x.csv", b"1")
            raise RuntimeError("boom")
    assert _hashes(out_dir) == first
    with OutputFolder(dest, fs=fs, warn=_no_warn) as out:
        fs.write(f"{out.staging}/x.csv", b"1")
        out.commit({"n": 2})
    files = read_marker(dest, fs=fs)["files"]
    assert {k: v for k, v in files.items() if not k.endswith(".crc")} == {"x.csv": 1}  # + Hadoop checksums
    check_destination(str(out_dir), [])  # read locally, Hadoop's .crc files of listed files are accepted
    assert sorted(n for n in os.listdir(tmp_path) if n != "out") == []
    # recovery from a half-done swap, through Hadoop
    out_dir.rename(tmp_path / f".out.old-{RUN_ID}")
    warnings: list[str] = []
    with OutputFolder(dest, fs=fs, warn=warnings.append):
        assert (out_dir / "x.csv").read_bytes() == b"1"
    assert len(warnings) == 1 and "restored" in warnings[0]


# ------------------------------------------------------------------ shmi synth --out

def _synth(out, capsys, *extra: str) -> tuple[int, str]:
    from shmi_spark.cli import main
    code = main(["synth", "--out", str(out), "--admissions", "2000", *extra])
    return code, capsys.readouterr().err


def test_synth_refuses_a_file_a_users_folder_and_a_run_output(tmp_path, capsys):
    target = tmp_path / "world.parquet"
    target.write_bytes(b"keep")
    code, err = _synth(target, capsys)
    assert code == 2 and str(target) in err and "is a file, not a folder" in err
    assert target.read_bytes() == b"keep"
    mine = tmp_path / "mine"
    _write(mine, {"hes_apc/keep.csv": b"1", "truth/notes.txt": b"2"})
    run = tmp_path / "run"
    _output(run, FIRST)
    before = _hashes(tmp_path)
    code, err = _synth(mine, capsys)
    assert code == 2 and "not an output of shmi" in err
    code, err = _synth(run, capsys)
    assert code == 2 and "holds a shmi run output, not a world output" in err
    code, err = _synth("hdfs://nn/world", capsys)
    assert code == 2 and "local folder" in err
    assert _hashes(tmp_path) == before


def _fake_generate(out, n, seed, start, end, workers=2, mismatch=0, log=print):
    """Stands in for synth.generate.generate: a small world named by its seed."""
    _write(Path(out), {f"hes_apc/seed{seed}.parquet": b"p" * n, "truth/summary.json": b"{}"})
    return {"spells_by_kind": {"analysis": n}, "episode_rows_written": n, "analysis_deaths": 1,
            "ons_rows": 1, "seconds": 0.0, "rule_vs_plan_mismatches": {"included": mismatch, "died": 0}}


def test_synth_replaces_an_earlier_world_only_when_complete(tmp_path, capsys, monkeypatch):
    import shmi_spark.synth.generate as G
    monkeypatch.setattr(G, "generate", _fake_generate)
    world = tmp_path / "world"
    assert _synth(world, capsys, "--seed", "1")[0] == 0
    marker = read_marker(str(world))
    assert marker["kind"] == "world" and marker["fingerprint"]["seed"] == 1
    assert marker["files"] == {"hes_apc/seed1.parquet": 2000, "truth/summary.json": 2}
    before = _hashes(world)
    monkeypatch.setattr(G, "generate", lambda *a, **k: _fake_generate(*a, **k, mismatch=3))
    assert _synth(world, capsys, "--seed", "2")[0] == 1
    assert _hashes(world) == before and _beside(world) == []
    monkeypatch.setattr(G, "generate", _fake_generate)
    assert _synth(world, capsys, "--seed", "3")[0] == 0
    assert sorted(_hashes(world)) == [MARKER, "hes_apc/seed3.parquet", "truth/summary.json"]
    assert _beside(world) == []
