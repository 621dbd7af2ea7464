"""Where every data set comes from: a folder the user names, or the cache, then each source in
turn, then one error naming them all.

`from_folder` reads the one folder a user named (a failure there is an error, never a cue to
fetch something else); `first_source` tries the sources before the cache, the cache, then the
sources after it, and when all fail raises `DatasetUnavailableError` listing each with its
fault and the fix. Each data set says what its sources are; this file only says the order.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from rnnlab.data import cache
from rnnlab.data.download import DatasetUnavailableError, FetchError

log = logging.getLogger(__name__)
T = TypeVar("T")

Source = tuple[str, Callable[[], T]]  # (label for messages, fetch: the checked data or raises)


class SourceError(RuntimeError):
    """One source could not supply the data set, or supplied something that fails its checks."""


# what a source may raise that means "this source failed, try the next"; a data set adds its
# own (IDXError, ValueError for a text that fails to decode)
FAILURES: tuple[type[BaseException], ...] = (SourceError, FetchError, OSError)


def from_folder(
    title: str, label: str, fetch: Callable[[], T], errors: tuple[type[BaseException], ...] = ()
) -> T:
    """What `fetch()` reads from the folder the user named; its failure raises
    `DatasetUnavailableError` "cannot load TITLE from LABEL: fault"."""
    try:
        return fetch()
    except (*FAILURES, *errors) as error:
        raise DatasetUnavailableError(f"cannot load {title} from {label}: {error}") from error


def first_source(
    title: str,
    after: Sequence[Source],
    *,
    cached: Callable[[], T | None],
    root: str | os.PathLike | None,
    name: str,
    refetch: bool,
    before: Sequence[Source] = (),
    fix: str,
    errors: tuple[type[BaseException], ...] = (),
) -> T:
    """The data from the first source that has it: each of `before` (local copies, never
    stored), then what `cached()` reads from cache entry `name` under `root` (skipped on
    `refetch`; a corrupted entry is reported, see `cache.try_cache`), then each of `after`
    (fetches, whose `fetch` stores what passed its checks). A failing source adds its line
    to the list the final `DatasetUnavailableError` shows, with `fix`."""
    tried: list[str] = []
    for label, fetch in before:
        try:
            return fetch()
        except (*FAILURES, *errors) as error:
            tried.append(f"{label}: {error}")
    corrupt = (cache.CacheError, SourceError, *errors)
    value = cache.try_cache(cached, root, name, tried, refetch=refetch, corrupt=corrupt)
    if value is not None:
        return value
    for label, fetch in after:
        started = time.perf_counter()
        try:
            value = fetch()
        except (*FAILURES, *errors) as error:
            log.warning("%s: %s, trying next source", label, error)
            tried.append(f"{label}: {error}")
            continue
        log.info("%s from %s in %.1f s", title, label, time.perf_counter() - started)
        return value
    lines = "\n".join(f"  - {line}" for line in tried)
    raise DatasetUnavailableError(
        f"could not load {title}; tried, in order:\n{lines}\nTo fix: {fix}"
    )


def shown(value: str, most: int = 40) -> str:
    """`value` for a one-line message: its repr when short and printable, else a description
    (raw file bytes never fill a screen or reach a terminal)."""
    if value.isprintable() and len(value) <= most:
        return repr(value)
    kind = "printable" if value.isprintable() else "unprintable"
    return f"{len(value):,} {kind} characters"
