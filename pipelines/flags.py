"""Flags are taken only as spelt, by the jobs and by every tool.

argparse takes any unambiguous prefix of a flag by default (`--sourc` for
`--source`), while Beam's own parser does not and only warns about a flag it
does not know. A job whose parser took `--no_messag` for `--no_messages`
would hand Beam a flag Beam then drops: the run would send its messages. So
no parser here takes abbreviations (`FlagParser`), and a flag nobody defines
is refused with exit 2, naming the flag it most likely means
(`unrecognized_message`).

Imports only the standard library: every tool and benchmark parses with it.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar, overload

#: How alike a misspelt flag and a known one must be for the known one to be suggested.
_SPELT_ALIKE = 0.75
_N = TypeVar("_N")


def closest_flag(flag: str, known: Iterable[str]) -> str | None:
    """The known flag `flag` most likely means, or None.

    A flag `flag` abbreviates (the closest of them when several start with it),
    else one spelt alike.
    """
    names = sorted(known)
    longer = [name for name in names if name.startswith(flag) and name != flag]
    candidates, cutoff = (longer, 0.0) if longer else (names, _SPELT_ALIKE)
    close = difflib.get_close_matches(flag, candidates, n=1, cutoff=cutoff)
    return close[0] if close else None


def unknown_flags(args: Sequence[str], known: Iterable[str]) -> list[tuple[str, str | None]]:
    """[(flag, closest known flag or None)] for each flag in `args` that is not in `known`.

    A flag is what argparse takes for one: `--name`, `--name=value` or
    `-name` (a dash and a letter), without a space, before a bare `--`.
    Values and positional arguments are not flags.
    """
    known = frozenset(known)
    found = []
    for arg in args:
        if arg == "--":
            break
        if " " in arg or not arg.startswith("-") or not (arg[1:2].isalpha() or arg[1:2] == "-"):
            continue
        flag = arg.split("=", 1)[0]
        if flag not in known:
            spelt = flag if flag.startswith("--") else f"-{flag}"
            found.append((flag, closest_flag(spelt, known)))
    return found


def unrecognized_message(args: Sequence[str], known: Iterable[str]) -> str | None:
    """`unrecognized flag --x (did you mean --y?)` for the first unknown flag in `args`, or None."""
    unknown = unknown_flags(args, known)
    if not unknown:
        return None
    flag, suggestion = unknown[0]
    hint = f" (did you mean {suggestion}?)" if suggestion else ""
    return f"unrecognized flag {flag}{hint}"


class FlagParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` that takes no abbreviation and names the flag meant.

    `allow_abbrev` is always False. Parsing first looks for a flag the parser
    does not define (nor `passed_on`: flags another parser takes, such as
    Beam's): the first is refused with exit 2 and `unrecognized flag --x (did
    you mean --y?)`, before argparse's own checks (a missing required flag
    would otherwise be reported instead). `parse_known_args` returns the
    `passed_on` flags among the leftovers.
    """

    def __init__(self, *args: Any, passed_on: Iterable[str] = (), **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self.passed_on = frozenset(passed_on)

    @property
    def flags(self) -> frozenset[str]:
        """Every flag this parser defines, as `--name` (and `-h`)."""
        return frozenset(self._option_string_actions)

    @overload
    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: None = None
    ) -> tuple[argparse.Namespace, list[str]]: ...

    @overload
    def parse_known_args(
        self, args: Iterable[str] | None, namespace: _N
    ) -> tuple[_N, list[str]]: ...

    @overload
    def parse_known_args(self, *, namespace: _N) -> tuple[_N, list[str]]: ...

    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        message = unrecognized_message(argv, self.flags | self.passed_on)
        if message:
            self.error(message)
        return super().parse_known_args(argv, namespace)
