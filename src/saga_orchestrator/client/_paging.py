"""Following the API's pages until a command has printed what it was asked for.

``--limit N`` of a command is the number of items it prints, whatever the size of the API's
pages: :class:`Pages` asks for page after page (each at most the route's largest page, and no
more than is still wanted) and stops at ``N`` items or at the last page. ``None``: every page.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ._models import Page

__all__ = ["Fetch", "Pages", "limit_option"]

Fetch = Callable[[Any, int], Page[Any]]
"""``(where, size) -> the page there`` (its ``next``: where the next one starts, or ``None``
at the end): a method of the client's, such as ``list_page``."""


class Pages:
    """The items of successive pages, page by page; :attr:`next` says where to go on."""

    def __init__(self, fetch: Fetch, start: Any, *, limit: int | None, page_size: int) -> None:
        self._fetch = fetch
        self._limit = limit
        self._page_size = page_size
        self.next: Any = start
        """Where the next page starts; ``None`` once the last page was read."""
        self.count = 0
        """Items given so far."""

    def __iter__(self) -> Iterator[Sequence[Any]]:
        while self.next is not None and (self._limit is None or self.count < self._limit):
            wanted = self._page_size
            if self._limit is not None:
                wanted = min(wanted, self._limit - self.count)
            page = self._fetch(self.next, wanted)
            self.next = page.next
            self.count += len(page.items)
            yield page.items

    def all(self) -> list[Any]:
        """Every item, read to the limit or the end."""
        return [item for page in self for item in page]


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def limit_option(
    parser: argparse.ArgumentParser, default: int | None, what: str, *, verb: str = "print"
) -> None:
    """``--limit N`` (the total printed) and ``--all`` (no limit)."""
    shown = f"default {default}" if default is not None else "default: all"
    limits = parser.add_mutually_exclusive_group()
    limits.add_argument(
        "--limit",
        type=_at_least_one,
        default=default,
        metavar="N",
        help=f"{verb} at most N {what}, reading as many pages as that takes ({shown})",
    )
    limits.add_argument(
        "--all",
        dest="limit",
        action="store_const",
        const=None,
        help=f"{verb} every one of the {what}",
    )
