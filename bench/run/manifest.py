"""A stage's manifest and its check (used by bench/run/store.py).

Check. Every read of a stage (`status`) compares each file's size with the manifest; the first
read in a process also hashes every file (the verdict is kept in memory for that process, for
as long as the manifest file is the same). A stage stored before manifests existed ("legacy")
is checked by parsing: its JSON files parse, its CSV files end with a newline, its .pt files
are zip archives whose CRCs match; `verify_store(..., write_manifests=True)` gives it one.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
STATUSES = ("ok", "failed")  # what a stage's status.json may say

# The hash verdict of each stage this process checked (absolute stage directory -> (the stamp of
# its manifest, None when intact or else the problem)).
_VERDICTS: dict[str, tuple[tuple, str | None]] = {}


def forget(stage_dir: Path) -> None:
    """Drop this process's verdict on a stage: its next check hashes it again."""
    _VERDICTS.pop(os.path.abspath(stage_dir), None)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


class Damaged(Exception):
    """A stage failed its check; the message is the problem (naming the file)."""


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def stage_files(stage_dir: Path) -> list[str]:
    return sorted(
        p.relative_to(stage_dir).as_posix()
        for p in stage_dir.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )


def write_manifest(stage_dir: Path) -> None:
    """manifest.json: the size and SHA-256 of every file of the stage directory."""
    files = {
        name: {"size": (stage_dir / name).stat().st_size, "sha256": sha256(stage_dir / name)}
        for name in stage_files(stage_dir)
    }
    tmp = stage_dir / f".{MANIFEST}.tmp"
    write_json(tmp, {"format": MANIFEST_FORMAT, "files": files})
    os.replace(tmp, stage_dir / MANIFEST)


def stage_stamp(stage_dir: Path) -> tuple | None:
    """Which copy of a stage this is: its manifest's (else status.json's) stat fields."""
    for name in (MANIFEST, "status.json"):
        try:
            st = (stage_dir / name).stat()
        except OSError:
            continue
        return name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
    return None


def checked_status(stage_dir: Path, rehash: bool = False) -> dict:
    """The parsed status.json of a stage that passes its check; raises Damaged. Sizes are
    compared on every call, hashes (or a legacy stage's parse checks) once per process and copy
    of the stage, or again with `rehash`."""
    key, stamp = os.path.abspath(stage_dir), stage_stamp(stage_dir)
    files = _manifest(stage_dir) if stamp is not None and stamp[0] == MANIFEST else None
    for name, (size, _) in (files or {}).items():
        try:
            actual = (stage_dir / name).stat().st_size
        except FileNotFoundError:
            raise Damaged(f"{name}: missing (listed in {MANIFEST})") from None
        if actual != size:
            raise Damaged(f"{name}: {actual} bytes, {MANIFEST} says {size}")
    if rehash or key not in _VERDICTS or _VERDICTS[key][0] != stamp:
        problem = _legacy_problem(stage_dir) if files is None else _hash_problem(stage_dir, files)
        _VERDICTS[key] = (stamp, problem)
    if _VERDICTS[key][1] is not None:
        raise Damaged(_VERDICTS[key][1])
    try:
        status = read_json(stage_dir / "status.json")
    except FileNotFoundError:
        raise Damaged("status.json: missing") from None
    except ValueError as err:
        raise Damaged(f"status.json: not valid JSON ({err})") from None
    if not isinstance(status, dict) or status.get("status") not in STATUSES:
        raise Damaged(f"status.json: no status of {' or '.join(STATUSES)}")
    return status


def _manifest(stage_dir: Path) -> dict[str, tuple[int, str]]:
    """name -> (size, sha256) from a stage's manifest; raises Damaged."""
    try:
        files = read_json(stage_dir / MANIFEST)["files"]
        out = {name: (int(e["size"]), str(e["sha256"])) for name, e in files.items()}
    except ValueError as err:
        raise Damaged(f"{MANIFEST}: not valid JSON ({err})") from None
    except (KeyError, TypeError, AttributeError):
        raise Damaged(f"{MANIFEST}: not a list of files with sizes and hashes") from None
    if "status.json" not in out or any(".." in Path(name).parts for name in out):
        raise Damaged(f"{MANIFEST}: lists no status.json, or a file outside the stage")
    return out


def _hash_problem(stage_dir: Path, files: dict[str, tuple[int, str]]) -> str | None:
    for name, (_, digest) in files.items():
        if sha256(stage_dir / name) != digest:
            return f"{name}: content differs from its SHA-256 in {MANIFEST}"
    return None


def _legacy_problem(stage_dir: Path) -> str | None:
    """A stage without a manifest: JSON parses, CSV ends its last line, a .pt zip is whole."""
    for name in stage_files(stage_dir):
        path = stage_dir / name
        if name.endswith(".json"):
            try:
                read_json(path)
            except ValueError as err:
                return f"{name}: not valid JSON ({err})"
        elif name.endswith(".csv"):
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - 1))
                if f.read(1) != b"\n":
                    return f"{name}: empty or cut short (no newline at its end)"
        elif name.endswith(".pt"):
            try:
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
            except (zipfile.BadZipFile, EOFError) as err:
                return f"{name}: not a whole torch archive ({err})"
            if bad is not None:
                return f"{name}: its member {bad} fails its CRC"
    return None


def read_problem(err: Exception) -> str:
    if isinstance(err, OSError):
        return f"cannot be read ({err.strerror or err}: {err.filename})"
    return str(err)
