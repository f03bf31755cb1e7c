"""Which files a batch processes and the output folder each gets: videos named on the command line or found
in folders, with unique, safe folder names."""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rehab.outputs import UNSAFE_NAME_CHARS

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".3gp"})


@dataclass(frozen=True)
class VideoInput:
    source: Path  # as given or found in a given folder
    name: str  # the output folder's name





def discover_videos(paths: Iterable[str | os.PathLike[str]], exclude: Iterable[str | os.PathLike[str]] = ()) -> list[VideoInput]:
    """The videos named by ``paths``: files as given (any extension, missing ones too, so that they fail
    with a reason), folders searched recursively for video files (hidden files and folders, and anything
    under ``exclude``, e.g. the output folder, are left out). Each gets a unique output folder name."""
    excluded = [Path(p).resolve() for p in exclude]
    found: list[tuple[Path, Path]] = []  # (path, path relative to what was given)
    seen: set[Path] = set()

    def add(path: Path, relative: Path) -> None:
        key = path.resolve() if path.exists() else path.absolute()
        if key not in seen:
            seen.add(key)
            found.append((path, relative))

    for given in paths:
        path = Path(given)
        if path.is_dir():
            videos = sorted(
                f for f in path.rglob("*")
                if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
                and not any(f.resolve().is_relative_to(e) for e in excluded))
            if not videos:
                logger.warning("no video files (%s) in folder %s", ", ".join(sorted(VIDEO_SUFFIXES)), path)
            for f in videos:
                add(f, f.relative_to(path))
        else:
            add(path, Path(path.name))
    return _name_outputs(found)




def _safe_name(relative: Path) -> str:
    stem_parts = list(relative.parts[:-1]) + [Path(relative.parts[-1]).stem] if relative.parts else ["video"]
    name = UNSAFE_NAME_CHARS.sub("_", "__".join(stem_parts)).strip().lstrip(".")
    return name or "video"


def _name_outputs(found: Sequence[tuple[Path, Path]]) -> list[VideoInput]:
    """Output folder names: the file name without its extension ("sub__name" inside a sub-folder); files that
    would share a name keep their extension, and if still shared get a hash of their path."""
    names = [_safe_name(rel) for _, rel in found]
    counts = Counter(names)
    names = [f"{n}_{rel.suffix.lstrip('.').lower()}" if counts[n] > 1 and rel.suffix else n
             for n, (_, rel) in zip(names, found)]
    counts = Counter(names)
    names = [f"{n}_{hashlib.sha1(str(p.absolute()).encode()).hexdigest()[:8]}" if counts[n] > 1 else n
             for n, (p, _) in zip(names, found)]
    return [VideoInput(source=p, name=n) for (p, _), n in zip(found, names)]

