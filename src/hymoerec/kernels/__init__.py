"""Native CPU kernels: C sources of this package, compiled on first use with the
machine's C compiler and loaded with ``ctypes``.

A kernel is one C file (with the folder's shared ``common.h``) of plain functions over
raw pointers and strides; it needs no torch headers, so a build takes about a second
(``torch.utils.cpp_extension`` would compile torch's headers for a minute and need
ninja). The library is built for
the machine's own instruction set (``-march=native``) and kept in
``$HYMOEREC_CACHE/kernels`` (default ``~/.cache/hymoerec/kernels``) under a name that
hashes the sources, the compiler, its flags and the CPU, so a cache shared between
machines never hands one a library it cannot run. A build writes a temporary file and
renames it into place, so processes that build at once, or a build that is killed,
never leave a half-written library under the final name (the next build removes a
killed build's temporary); a cached library that fails to
load is built again.

Callers catch :class:`KernelUnavailable` (no compiler, a failed build) and fall back to
their PyTorch implementation.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from hymoerec.data.cache import cache_dir

SOURCES = Path(__file__).resolve().parent
# -ffast-math's parts but one: linked into a shared library, -ffast-math itself makes some
# compilers (GCC before 13) add a start-up file that sets flush-to-zero for the whole
# process. Without the reassociation and finite-math parts the loops over the state are
# not vectorised (the scan's forward ran 1.8x slower without them).
FLAGS = (
    "-O3",
    "-march=native",
    "-fopenmp",  # torch's own libgomp.so.1 (already loaded) serves it
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fno-signed-zeros",
    "-fassociative-math",
    "-freciprocal-math",
    "-ffinite-math-only",
    "-std=gnu11",
    "-fPIC",
    "-shared",
)


_switch = {"on": False}


@contextmanager
def use(on: bool) -> Iterator[None]:
    """Inside: the models' CPU training runs the kernels that ``enabled`` gates
    (``train.native_kernels``); each falls back by itself where it cannot be built."""
    previous = _switch["on"]
    _switch["on"] = on
    try:
        yield
    finally:
        _switch["on"] = previous


def enabled() -> bool:
    return _switch["on"]


class KernelUnavailable(RuntimeError):
    """A native kernel that cannot be built or loaded here; the message says why."""


def warn_unavailable(what: str, error: KernelUnavailable, instead: str) -> None:
    """The one warning a caller gives when it stops trying a kernel for the process."""
    warnings.warn(f"{what} unavailable ({error}); {instead}", RuntimeWarning, stacklevel=3)


def compiler() -> str:
    """The C compiler: ``$CC``, else ``cc``, else ``gcc``."""
    name = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not name:
        raise KernelUnavailable("no C compiler found (set CC, or install cc/gcc)")
    return name


def _cpu() -> str:
    """What the CPU offers, for the cache key (-march=native builds for it)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = ("model name", "flags")
    return "\n".join(sorted({line for line in lines if line.startswith(wanted)}))


@cache
def _version(cc: str) -> str:
    try:
        done = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        raise KernelUnavailable(f"C compiler {cc!r} does not run: {error}") from error
    if done.returncode != 0:
        raise KernelUnavailable(f"C compiler {cc!r} does not run: {done.stderr.strip()}")
    return done.stdout


def library_path(name: str) -> Path:
    """Where ``load`` keeps the library of ``name``.c for this compiler and CPU."""
    cc = compiler()
    sources = [SOURCES / f"{name}.c", *sorted(SOURCES.glob("*.h"))]  # what it includes
    parts = [*(path.read_text() for path in sources), cc, _version(cc), " ".join(FLAGS), _cpu()]
    key = hashlib.sha256("\0".join([*parts, platform.machine()]).encode()).hexdigest()[:16]
    return cache_dir() / "kernels" / f"{name}-{key}.so"


STALE_SECONDS = 600  # a temporary this old belongs to a build that was killed


def _build(source: Path, target: Path, cc: str) -> None:
    """Compile ``source`` into ``target`` through a temporary file in the same folder,
    removing the temporaries that killed builds of it left behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.stem}.tmp-*"):
        with contextlib.suppress(OSError):  # another process may remove it first
            if time.time() - stale.stat().st_mtime > STALE_SECONDS:
                stale.unlink()
    handle, temporary = tempfile.mkstemp(prefix=f".{target.stem}.tmp-", dir=target.parent)
    os.close(handle)
    try:
        done = subprocess.run(
            [cc, *FLAGS, str(source), "-o", temporary, "-lm"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise KernelUnavailable(f"{cc} could not build {source.name}: {done.stderr.strip()}")
        os.replace(temporary, target)
    except (OSError, subprocess.SubprocessError) as error:
        raise KernelUnavailable(f"building {source.name} failed: {error}") from error
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


@cache
def load(name: str) -> ctypes.CDLL:
    """The library of ``name``.c, built when the cache holds no loadable copy."""
    target = library_path(name)
    if target.is_file():
        try:
            return ctypes.CDLL(str(target))
        except OSError:  # truncated or corrupt: build it again
            pass
    _build(SOURCES / f"{name}.c", target, compiler())
    try:
        return ctypes.CDLL(str(target))
    except OSError as error:
        raise KernelUnavailable(f"{target} does not load: {error}") from error
