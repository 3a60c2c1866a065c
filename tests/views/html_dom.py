"""The HTML report as a reader sees it, for the report tests here and in tests/integration."""

from __future__ import annotations

import re
from html.parser import HTMLParser


class Dom(HTMLParser):
    """What a reader of the HTML can see: ids with their text, every tag and attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_by_id: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if tag not in ("br", "meta", "input", "path", "rect", "line", "polygon", "ellipse"):
            self._open.append(found.get("id"))

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("br", "meta", "input"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1]:
            key = str(self._open[-1])
            self.text_by_id[key] = self.text_by_id.get(key, "") + data


def dom_of(html: str) -> Dom:
    dom = Dom()
    dom.feed(html)
    return dom


def assert_self_contained(html: str) -> None:
    """Nothing is fetched: no external script, style, image, font or frame."""
    dom = dom_of(html)
    for tag, attrs in dom.tags:
        for name in ("src", "href", "xlink:href", "action", "data"):
            value = attrs.get(name) or ""
            assert not re.match(r"\s*(https?:|//|ftp:)", value), (tag, name, value)
        assert tag not in ("link", "iframe", "img", "object", "embed"), tag
    assert "@import" not in html and "url(http" not in html
