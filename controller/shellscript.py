"""Shell scripts in trial templates: where each placeholder sits and how its value stays literal.

Called by :mod:`controller.templating` (to substitute values when a trial is rendered) and by
:mod:`controller.template_check` (to refuse an unsafe template when the Experiment is
validated). Pure string work, no I/O; the lexer itself is :mod:`controller.shell_lexer`.

:func:`find_script` finds the script argument of an argv that runs a shell: ``sh``, ``bash``,
``dash``, ``zsh``, ``ash``, ``ksh``, ``mksh`` by name or path, behind ``env`` (with its options
and ``NAME=VALUE`` assignments), with any shell options before ``-c`` (``-o pipefail``, ``-e``,
``-lc``, ``-euo pipefail``, ``--login``). :func:`analyse` tells, for each
``${trialParameters.x}`` in the script, whether it stands bare, inside ``"…"`` or inside
``'…'``, and raises :class:`UnsafeScript` where no quoting keeps a value literal (a
here-document, ``$(…)``, ``eval``, a nested ``sh -c`` …; the full list is in
:mod:`controller.shell_lexer`). :func:`quote` writes a value so that it is literal in its
context and :func:`render` does both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from controller.shell_lexer import (
    PLACEHOLDER,
    SHELLS,
    Context,
    Slot,
    UnsafeScript,
    lex,
    program_name,
)

__all__ = [
    "PLACEHOLDER",
    "SHELLS",
    "Context",
    "Invocation",
    "Slot",
    "UnsafeScript",
    "analyse",
    "find_script",
    "quote",
    "render",
]

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\+?=")
_PLAIN_BARE = re.compile(r"[A-Za-z0-9_.+-]+")
_SPECIAL_IN_DOUBLE = re.compile(r'[$`"\\!]')


@dataclass(frozen=True)
class Invocation:
    """How an argv reaches a shell.

    ``script``: index of the script a shell runs (``sh -c SCRIPT``), or None. ``opaque``: index
    from which arguments may reach a shell in a way not analysed (``env -S``, a shell behind an
    unknown wrapper), or None; ``reason`` says why.
    """

    script: int | None = None
    opaque: int | None = None
    reason: str = ""


def find_script(argv: Sequence[str]) -> Invocation:
    """Where ``argv`` (a container's ``command`` + ``args``) hands a script to a shell."""
    i, n = 0, len(argv)
    while i < n and program_name(argv[i]) == "env":
        i, split = _skip_env(argv, i + 1)
        if split is not None:
            return Invocation(opaque=split, reason="env -S splits it into a command line")
    if i < n and program_name(argv[i]) in SHELLS:
        return Invocation(script=_shell_script(argv, i + 1))
    for j in range(i + 1, n):
        if program_name(argv[j]) in SHELLS and _shell_script(argv, j + 1) is not None:
            return Invocation(
                opaque=j,
                reason=f"{argv[j]} -c is run through {argv[i]!r}, which tunery does not "
                "analyse; call the shell directly (or through env)",
            )
    return Invocation()


def _skip_env(argv: Sequence[str], i: int) -> tuple[int, int | None]:
    """Index of the program ``env`` runs, and the index of a ``-S`` string if there is one."""
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return i + 1, None
        if arg.startswith("--"):
            option = arg.split("=", 1)[0]
            if option == "--split-string":
                return i, i
            i += 2 if option in ("--unset", "--chdir") and "=" not in arg else 1
        elif arg.startswith("-") and arg != "-":
            cluster, step = arg[1:], 1
            for k, flag in enumerate(cluster):
                if flag == "S":
                    return i, i
                if flag in "uC":
                    step = 1 if cluster[k + 1 :] else 2
                    break
            i += step
        elif arg == "-" or _ASSIGNMENT.match(arg):
            i += 1
        else:
            return i, None
    return i, None


def _shell_script(argv: Sequence[str], i: int) -> int | None:
    """Index of the script operand when the options from ``i`` include ``-c``; else None."""
    command_mode = False
    while i < len(argv):
        arg = argv[i]
        if arg in ("--", "-"):
            i += 1
            break
        if arg.startswith("--"):
            i += 2 if arg in ("--rcfile", "--init-file") else 1
        elif len(arg) > 1 and arg[0] in "-+":
            command_mode = command_mode or (arg[0] == "-" and "c" in arg[1:])
            i += 1 + arg.count("o") + arg.count("O")
        else:
            break
    return i if command_mode and i < len(argv) else None


def quote(value: str, context: Context) -> str:
    """``value`` written so that the shell reads it literally in ``context``.

    Bare: single-quoted (plain words such as ``0.01`` or ``adam`` stay as they are). In
    ``"…"``: as it is when it holds none of ``$ ` " \\ !``, else the double quote is closed,
    the value single-quoted, and the double quote reopened (so neither escapes nor history
    expansion apply). In ``'…'``: each ``'`` becomes ``'\\''``. In a here-document's body:
    ``\\``, ``$`` and backticks escaped (as they are in a quoted one's: nothing is special
    there); a value with a line break is refused, as it could end the here-document.

    Raises:
        UnsafeScript: a line break in a value for a here-document.
    """
    if context in (Context.HEREDOC, Context.HEREDOC_LITERAL):
        if "\n" in value or "\r" in value:
            raise UnsafeScript(
                f"the value {value!r} holds a line break, which could end the here-document "
                "it is substituted into"
            )
        if context is Context.HEREDOC_LITERAL:
            return value
        return re.sub(r"([\\$`])", r"\\\1", value)
    single = "'" + value.replace("'", "'\\''") + "'"
    if context is Context.SINGLE:
        return value.replace("'", "'\\''")
    if context is Context.DOUBLE:
        return value if not _SPECIAL_IN_DOUBLE.search(value) else f'"{single}"'
    return value if _PLAIN_BARE.fullmatch(value) else single


def analyse(script: str) -> list[Slot]:
    """Every placeholder of ``script`` with its quoting context, in order.

    Raises:
        UnsafeScript: a placeholder whose context cannot be kept literal, or a script whose
            quoting cannot be followed (unterminated quote); the message says which and why.
    """
    return lex(script)


def render(script: str, values: Mapping[str, str], missing: Callable[[str], Exception]) -> str:
    """``script`` with each placeholder replaced by its value, quoted for its context.

    Raises:
        UnsafeScript: see :func:`analyse`.
        Exception: ``missing(name)`` for a placeholder without a value.
    """
    out: list[str] = []
    at = 0
    for slot in lex(script):
        if slot.name not in values:
            raise missing(slot.name)
        value = values[slot.name]
        if slot.context is Context.BARE and script[slot.start - 1 : slot.start] == "~":
            value_text = "'" + value.replace("'", "'\\''") + "'"  # no tilde expansion
        else:
            value_text = quote(value, slot.context)
        out += [script[at : slot.start], value_text]
        at = slot.end
    out.append(script[at:])
    return "".join(out)
