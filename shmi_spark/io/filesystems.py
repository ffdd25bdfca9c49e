"""File systems for output folders: the local disk, or Hadoop's FileSystem for URIs.

:class:`LocalFS` and :class:`HadoopFS` offer the same handful of operations
(exists, list, mkdirs, rename, delete, exclusive create, read, write, times,
an atomic exchange where the OS has one) on which
:mod:`shmi_spark.io.outputs` writes its staging, lock and commit logic once.
Plus the path arithmetic both need: comparing local paths and URIs, a
destination's parent and name.
"""

from __future__ import annotations

import ctypes
import errno
import os
import posixpath
import re
import shutil
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from shmi_spark.io.paths import is_uri, local_path

__all__ = ["real_path", "normal_uri", "comparable_path", "is_within", "split_path", "join_path", "LocalFS",
           "HadoopFS", "filesystem", "resolve_destination", "pid_alive"]

_URI_ROOT = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+:(//[^/]*)?$")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_NO_EXCHANGE = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP})


def real_path(path: str) -> str:
    """A local path or ``file:`` URI as an absolute path with symlinks resolved."""
    return os.path.realpath(local_path(path))


def normal_uri(uri: str) -> str:
    """``scheme://authority/path`` with the scheme and authority lower-cased and the path normalised."""
    parts = urlsplit(uri)
    path = posixpath.normpath(parts.path or "/")
    path = "/" + path.lstrip("/")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}".rstrip("/")


def comparable_path(path: str) -> tuple[str, str]:
    """("local", real path) or ("uri", normalised URI): two paths overlap only within one kind."""
    if is_uri(path):
        return "uri", normal_uri(path)
    return "local", real_path(path)


def is_within(inner: str, outer: str) -> bool:
    """``inner`` equals ``outer`` or lies under it (prefix on a ``/`` boundary)."""
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def split_path(path: str) -> tuple[str, str]:
    """(parent, name) of a local path or URI; a URI's parent keeps its scheme and authority.

    A root (``/``, ``hdfs://nn/``) is its own parent, with an empty name.
    """
    stripped = path.rstrip("/")
    if not stripped or _URI_ROOT.match(stripped):
        return (path if path.endswith("/") else path + "/"), ""
    head, _, name = stripped.rpartition("/")
    if head == "" or _URI_ROOT.match(head):
        head += "/"
    return head, name


def join_path(parent: str, name: str) -> str:
    """``parent/name`` for a local path or URI."""
    return parent + name if parent.endswith("/") else f"{parent}/{name}"


# ------------------------------------------------------------------ backends

def _remove_dead_temporaries(path: str) -> None:
    """Delete ``<path>.<pid>-<n>.tmp`` files that :meth:`LocalFS.create_exclusive` of a process since
    killed left behind (its pid gone, its content our JSON with a ``run_id``); nothing else."""
    folder, name = os.path.split(path)
    pattern = re.compile(re.escape(name) + r"\.(\d+)-\d+\.tmp")
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry)
        if not match or pid_alive(int(match.group(1))):
            continue
        temp = os.path.join(folder, entry)
        try:
            with open(temp, "rb") as f:
                ours = b'"run_id"' in f.read(4096)
            if ours:
                os.unlink(temp)
        except OSError:
            pass  # gone already, or not ours to remove


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalFS:
    """The local filesystem, on plain absolute paths.

    Both backends offer: exists, is_dir, entries (name, is a folder, size),
    mkdirs, rename, delete (recursive), remove_empty, create_exclusive, read,
    write, mtime, touch, writable, exchange; and ``pid_rule``, whether a lock
    holder on this host may be judged by its pid.

    ``atomic_exchange=False`` disables ``renameat2`` (the rename fallback is
    then used, as on systems without it).
    """

    pid_rule = True  # a lock's holder on this host can be checked by its pid

    def __init__(self, atomic_exchange: bool = True) -> None:
        self.atomic_exchange = atomic_exchange

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def entries(self, path: str) -> list[tuple[str, bool, int]]:
        """(name, is a folder, size in bytes) of a folder's entries; symlinks count as files."""
        with os.scandir(path) as it:
            return [(e.name, e.is_dir(follow_symlinks=False), e.stat(follow_symlinks=False).st_size)
                    for e in it]

    def mkdirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def delete(self, path: str, *, attempts: int = 12) -> None:
        """Delete a file, or a folder and everything in it.

        A task of a run being stopped may still be writing into the folder: a
        deletion that meets a new file is tried again, up to ``attempts`` times
        over about 13 s (on a loaded machine a stopped task can take seconds to
        notice; 2 s was seen to be too short).
        """
        if not (os.path.isdir(path) and not os.path.islink(path)):
            os.remove(path)
            return
        for attempt in range(attempts):
            try:
                shutil.rmtree(path)
                return
            except FileNotFoundError:
                if not os.path.lexists(path):
                    return
                error = None
            except OSError as exc:
                error = exc
            if attempt == attempts - 1 and error is not None:
                raise error
            time.sleep(min(0.2 * (attempt + 1), 2.0))

    def remove_empty(self, path: str) -> None:
        os.rmdir(path)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create ``path`` holding ``data`` atomically; False if it already exists.

        The data are written to a temporary file first and hard-linked to
        ``path`` (``link(2)`` fails if ``path`` exists), so ``path`` never
        exists half-written, even if the process is killed in between (where
        a file system has no hard links: ``O_EXCL`` and a write).
        """
        _remove_dead_temporaries(path)
        tmp = f"{path}.{os.getpid()}-{time.monotonic_ns()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        return True

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def write(self, path: str, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def mtime(self, path: str) -> float:
        return os.stat(path).st_mtime

    def touch(self, path: str) -> None:
        os.utime(path)

    def writable(self, path: str) -> bool:
        return os.access(path, os.W_OK | os.X_OK)

    def exchange(self, a: str, b: str) -> bool:
        """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False if unavailable."""
        if not self.atomic_exchange:
            return False
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
        except (OSError, AttributeError):
            return False
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int
        if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return True
        err = ctypes.get_errno()
        if err in _NO_EXCHANGE:
            return False
        raise OSError(err, os.strerror(err), a, None, b)


class HadoopFS:
    """Hadoop's FileSystem (``hdfs:``, ``s3a:``, ``file:``, ...) through a SparkSession's JVM.

    Java exceptions become ``OSError`` (``FileExistsError``,
    ``FileNotFoundError`` where they mean that).  There is no atomic exchange
    and a lock holder's pid cannot be checked: locks go stale by mtime only.
    """

    pid_rule = False

    def __init__(self, spark) -> None:
        self._jvm = spark._jvm
        self._conf = spark._jsc.hadoopConfiguration()

    def _call(self, path: str, action: Callable):
        """``action(filesystem, hadoop_path)`` with Java errors as OSError."""
        from py4j.protocol import Py4JJavaError
        try:
            p = self._jvm.org.apache.hadoop.fs.Path(path)
            return action(p.getFileSystem(self._conf), p)
        except Py4JJavaError as exc:
            text = str(exc.java_exception.toString())
        if "FileAlreadyExistsException" in text or "AlreadyBeingCreatedException" in text:
            raise FileExistsError(errno.EEXIST, text, path)
        if "FileNotFoundException" in text:
            raise FileNotFoundError(errno.ENOENT, text, path)
        raise OSError(errno.EIO, text, path)

    def _path(self, path: str):
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def exists(self, path: str) -> bool:
        return bool(self._call(path, lambda fs, p: fs.exists(p)))

    def is_dir(self, path: str) -> bool:
        try:
            return bool(self._call(path, lambda fs, p: fs.getFileStatus(p).isDirectory()))
        except FileNotFoundError:
            return False

    def entries(self, path: str) -> list[tuple[str, bool, int]]:
        """(name, is a folder, size in bytes) of a folder's entries."""
        return self._call(path, lambda fs, p: [(str(s.getPath().getName()), bool(s.isDirectory()), int(s.getLen()))
                                               for s in fs.listStatus(p)])

    def mkdirs(self, path: str) -> None:
        if not self._call(path, lambda fs, p: fs.mkdirs(p)):
            raise OSError(errno.EIO, "mkdirs failed", path)

    def rename(self, src: str, dst: str) -> None:
        """Rename; refuses an existing ``dst`` (Hadoop would move ``src`` into it)."""
        if self.exists(dst):
            raise FileExistsError(errno.EEXIST, "rename target exists", dst)
        if not self._call(src, lambda fs, p: fs.rename(p, self._path(dst))):
            raise OSError(errno.EIO, f"rename to {dst} failed", src)

    def delete(self, path: str) -> None:
        """Delete a file, or a folder and everything in it."""
        self._call(path, lambda fs, p: fs.delete(p, True))

    def remove_empty(self, path: str) -> None:
        self._call(path, lambda fs, p: fs.delete(p, False))

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create ``path`` holding ``data`` (``create(path, overwrite=False)``); False if it exists."""
        try:
            self._call(path, lambda fs, p: self._write_stream(fs.create(p, False), data))
        except FileExistsError:
            return False
        return True

    @staticmethod
    def _write_stream(stream, data: bytes) -> None:
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def read(self, path: str) -> bytes:
        def read(fs, p):
            stream = fs.open(p)
            try:
                return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
            finally:
                stream.close()
        return self._call(path, read)

    def write(self, path: str, data: bytes) -> None:
        self._call(path, lambda fs, p: self._write_stream(fs.create(p, True), data))

    def mtime(self, path: str) -> float:
        return self._call(path, lambda fs, p: fs.getFileStatus(p).getModificationTime()) / 1000.0

    def touch(self, path: str) -> None:
        self._call(path, lambda fs, p: fs.setTimes(p, int(time.time() * 1000), -1))

    def writable(self, path: str) -> bool:
        return True  # permissions are enforced by the cluster when writing

    def exchange(self, a: str, b: str) -> bool:
        return False


def filesystem(dest: str, spark=None):
    """The backend for ``dest``: :class:`LocalFS` for local paths and ``file:`` URIs, else :class:`HadoopFS`."""
    if not is_uri(dest):
        return LocalFS()
    if spark is None:
        raise ValueError(f"a SparkSession is needed to write to {dest}")
    return HadoopFS(spark)


def resolve_destination(dest: str, fs) -> str:
    """``dest`` as the backend addresses it: a real local path for LocalFS, the URI for HadoopFS."""
    return real_path(dest) if isinstance(fs, LocalFS) else dest.rstrip("/")


