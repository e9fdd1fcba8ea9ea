"""The names of earlier versions of a row: `<job_key>@<first 8 of the old request hash>[-n]`.

A row whose request changed under the same id keeps its old version in the ledger under this name
(and its video as `<name>.mp4`): ARCHITECTURE.md, "archived versions". Every reader and writer of
that spelling goes through here.
"""

from __future__ import annotations

from collections.abc import Container

import polars as pl

MARK = "@"


def archived_name(job_key: str, request_hash: str | None, taken: Container[str] = ()) -> str:
    """The name an old version of `job_key` is kept under; `-2`, `-3`... when edited back and forth
    (A, B, A, B), so that every version is kept."""
    stem = f"{job_key}{MARK}{(request_hash or 'old')[:8]}"
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    return name


def is_archived(job_key: str) -> bool:
    return MARK in job_key


def base_key(job_key: str) -> str:
    """The row id an archived version was (the key itself for a current row)."""
    return job_key.split(MARK, 1)[0]


def is_archived_col(column: str = "job_key") -> pl.Expr:
    return pl.col(column).str.contains(MARK, literal=True)


def base_key_col(column: str = "job_key") -> pl.Expr:
    return pl.col(column).str.split(MARK).list.first()
