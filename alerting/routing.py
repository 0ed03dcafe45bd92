"""A routing tree of label matchers, as Alertmanager 0.25's ``route`` block.

Matchers use Alertmanager's classic syntax: ``name=value``, ``name!=value``, ``name=~regex``,
``name!~regex``, the value optionally in double quotes; a regex must match the whole value; a
missing label reads as the empty string. A route matches when all its matchers do; an alert
enters the root (which must match everything), descends into the first matching child, and
goes on to the next siblings only where a matching child has ``continue: true``. The deepest
matching routes deliver; a route with no matching child delivers itself. Unset receivers are
inherited from the parent. Grouping, inhibition and silences are Alertmanager's job and are not
re-implemented here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_MATCHER = re.compile(
    r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|[^"]*?)\s*$'
)


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label condition, e.g. ``Matcher.parse('severity=~"critical|warning"')``."""

    name: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in {"=", "!=", "=~", "!~"}:
            raise ValueError(f"unknown matcher operator {self.op!r}")
        if self.op in {"=~", "!~"}:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.value!r}: {exc}") from exc

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse ``name op value``.

        >>> Matcher.parse('severity = "critical"')
        Matcher(name='severity', op='=', value='critical')
        >>> Matcher.parse("model=~fraud.*").matches({"model": "fraud-eu"})
        True
        """
        m = _MATCHER.match(text)
        if m is None:
            raise ValueError(f"invalid matcher {text!r}: expected name=value, !=, =~ or !~")
        name, op, value = m.groups()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        return cls(name, op, value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher (a missing label is the empty string)."""
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


@dataclass(frozen=True, slots=True)
class Route:
    """A node of the routing tree: the ``receiver`` (inherited when None), its ``matchers``,
    whether to ``continue`` to the next sibling after matching, and child ``routes``."""

    receiver: str | None = None
    matchers: tuple[Matcher, ...] = ()
    continue_: bool = False
    routes: tuple[Route, ...] = ()

    def receivers(self, labels: Mapping[str, str]) -> list[str]:
        """The receivers that get an alert with ``labels``, in tree order, without repeats.

        >>> tree = Route("chat", routes=(
        ...     Route("pager", (Matcher.parse("severity=critical"),), continue_=True),
        ...     Route("tickets", (Matcher.parse("alertname=DataQuality"),)),
        ... ))
        >>> tree.receivers({"severity": "critical", "alertname": "DataQuality"})
        ['pager', 'tickets']
        >>> tree.receivers({"severity": "warning", "alertname": "FeatureDrift"})
        ['chat']
        """
        out: list[str] = []
        for name in self._match(labels, None) or []:
            if name not in out:
                out.append(name)
        return out

    def _match(self, labels: Mapping[str, str], inherited: str | None) -> list[str] | None:
        if not all(m.matches(labels) for m in self.matchers):
            return None
        receiver = self.receiver if self.receiver is not None else inherited
        found: list[str] = []
        for child in self.routes:
            got = child._match(labels, receiver)
            if got is None:
                continue
            found += got
            if not child.continue_:
                break
        if not found and receiver is not None:
            found.append(receiver)
        return found

    def receiver_names(self) -> set[str]:
        """Every receiver named anywhere in the tree."""
        names = {self.receiver} if self.receiver is not None else set()
        for child in self.routes:
            names |= child.receiver_names()
        return names


def parse_matchers(items: Sequence[str]) -> tuple[Matcher, ...]:
    """Matchers from strings; a single ``{a="b",c=~"d"}`` string holds several."""
    out: list[Matcher] = []
    for item in items:
        text = item.strip()
        if text.startswith("{") and text.endswith("}"):
            parts = re.findall(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+', text[1:-1])
            out += [Matcher.parse(p) for p in parts if p.strip()]
        else:
            out.append(Matcher.parse(text))
    return tuple(out)
