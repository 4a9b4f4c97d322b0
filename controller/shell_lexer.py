"""A small lexer of POSIX shell quoting: the context of each placeholder in a script.

Private helper of :mod:`controller.shellscript` (which re-exports its public names). One pass
over the script follows backslashes, ``'…'``, ``"…"``, ``$(…)``, backticks, ``${…}``,
arithmetic, here-documents and comments, and records for each ``${trialParameters.x}`` whether
it stands bare, in ``"…"`` or in ``'…'``, together with the words of its simple command. It
raises :class:`UnsafeScript` wherever a value could not be kept literal by quoting: inside a
construct the shell expands or evaluates again (a here-document other than one ``read`` into a
variable, or after a ``$(``/``${``/backtick in one; comment, ``$(…)``, backticks,
``${…}``, ``$'…'``, ``$"…"``, ``<(…)``, arithmetic, ``[[ … ]]``, an array subscript), after a
backslash or a ``$``, as the command name or an argument of a command computed at run time,
an argument of a command that runs it as code (``eval``, ``trap``, ``ssh``, a nested
``sh -c`` …) or takes it as a variable name (``read``, ``printf -v``, ``declare`` names), an
assignment in a script that uses arithmetic (bash evaluates variables there and runs
``a[$(cmd)]``), and anything after a construct it cannot follow reliably.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

PLACEHOLDER = re.compile(r"\$\{trialParameters\.(.+?)\}")
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash", "ksh", "mksh"})

# commands that run their arguments as shell code (directly or on another machine)
_EVALUATORS = frozenset(
    [
        "eval",
        "let",
        "trap",
        "alias",
        "source",
        ".",
        "ssh",
        "su",
        "runuser",
        "watch",
        "flock",
        "script",
        "parallel",
    ]
)
# builtins whose arguments name variables (subscripts are evaluated) or carry attributes
_DECLARERS = frozenset({"declare", "typeset", "local", "export", "readonly"})
# words that keep the next word in command position
_RESERVED = frozenset({"!", "{", "}", "if", "then", "else", "elif", "do", "while", "until"})
# builtins that take variable names (bash evaluates a subscript in one: a[$(cmd)])
_NAMERS = frozenset({"read", "unset", "mapfile", "readarray", "getopts", "integer", "vared"})
# commands that assign their arguments to shell variables or positional parameters
_ASSIGNERS = frozenset({"for", "select", "set", *_DECLARERS})
# anything that makes bash/zsh/ksh evaluate a variable's value as an arithmetic expression
_ARITHMETIC = re.compile(
    r"\(\(|\$\[|\blet\b|\[\[|\binteger\b|[A-Za-z_0-9]\[|\$\{[^}]*[\[:]"
    r"|\b(?:declare|typeset|local|readonly|export)\b[^\n;&|]*\s[-+][A-Za-z]*i"
)
_EXPANDS = re.compile(r"\$[({\[]|`")  # what an unquoted here-document expands (escaped or not)
_RC_QUOTES = re.compile(r"r_*c_*q_*u_*o_*t_*e_*s", re.IGNORECASE)
_DURATION = re.compile(r"^[0-9.]+[smhd]?$")
_DYNAMIC = "\1"  # marks a part of a word computed at run time ($x, $(…), `…`)
_FUNCTION = re.compile(r"\bfunction\s+([^\s(){};&|]+)|([A-Za-z_][\w.:-]*)\s*\(\s*\)")
# commands that run the command in their arguments (options and durations skipped)
_WRAPPERS = frozenset(
    {"exec", "time", "command", "builtin", "nohup", "setsid", "nice", "stdbuf", "timeout"}
)
_OPERATORS = frozenset(";&|()<>")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\+?=")
_SUBSCRIPT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\[[^\]]*$")


class UnsafeScript(ValueError):
    """A placeholder sits where its value could not be kept literal (the message says where)."""


class Context(enum.Enum):
    """The quoting context of a placeholder in a shell script."""

    BARE = "bare"
    DOUBLE = "double-quoted"
    SINGLE = "single-quoted"
    HEREDOC = "in a here-document"  # an unquoted one's body: $ ` \\ are special
    HEREDOC_LITERAL = "in a quoted here-document"  # <<'EOM': nothing is special


@dataclass(frozen=True)
class Slot:
    """One placeholder of a script: its span in the script, its name and its context."""

    start: int
    end: int
    name: str
    context: Context


def program_name(arg: str) -> str:
    """The file name of a command word (``/usr/bin/env`` -> ``env``)."""
    return PurePath(arg).name


def lex(script: str) -> list[Slot]:
    """Every placeholder of ``script`` with its quoting context, in order.

    Raises:
        UnsafeScript: a placeholder whose context cannot be kept literal, or a script whose
            quoting cannot be followed (unterminated quote).
    """
    if not PLACEHOLDER.search(script):
        return []
    lexer = _Lexer(script)
    lexer.commands(closer=None, forbid=None)
    placed = {slot.start for slot in lexer.slots}
    for match in PLACEHOLDER.finditer(script):
        if match.start() not in placed:  # a safety net: every placeholder must have a context
            raise UnsafeScript(
                f"cannot tell how {match.group(0)} is quoted (at offset {match.start()})"
            )
    return lexer.slots


@dataclass
class _Command:
    """The words read so far of the simple command being lexed."""

    words: list[str]
    word: str = ""
    quoted: bool = False  # the current word has a quoted part
    redirect: bool = False  # the current word is a redirection target
    duplicate: bool = False  # ... of >& or <& (bash expands such a word twice)
    test: bool = False  # inside [[ … ]]

    def end_word(self, lexer: _Lexer) -> None:
        if self.word or self.quoted:
            if self.redirect:
                self.redirect = self.duplicate = False
            else:
                self.words.append(self.word)
                bare = not self.quoted
                if bare and self.word == "[[" and len(_command_words(self.words[:-1])) == 0:
                    self.test = True
                elif bare and self.word == "]]":
                    self.test = False
                elif bare and self.word == "case" and lexer.depth_of_nesting:
                    lexer.uncertain = "after a case statement inside $(…)"
        self.word, self.quoted = "", False

    def end_command(self) -> None:
        self.words, self.word, self.quoted = [], "", False
        self.redirect = self.duplicate = False


def _odd_backslashes(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _command_words(words: Sequence[str]) -> list[str]:
    """The words from the command name on: leading reserved words and assignments dropped."""
    k = 0
    while k < len(words) and (words[k] in _RESERVED or _ASSIGNMENT.match(words[k])):
        k += 1
    return list(words[k:])


def _command_problem(words: Sequence[str], word: str, redirect: bool) -> str | None:
    """Why a placeholder in ``word``, an argument of the command ``words``, is unsafe."""
    rest = _command_words(words)
    while rest and (program_name(rest[0]) in _WRAPPERS or program_name(rest[0]) == "env"):
        rest = rest[1:]
        while rest and (
            rest[0].startswith("-") or _ASSIGNMENT.match(rest[0]) or _DURATION.match(rest[0])
        ):
            with_value = rest[0] in ("-u", "-C", "-n", "-s", "-k", "-a")
            rest = rest[2:] if with_value else rest[1:]
    if not rest:
        if redirect or _ASSIGNMENT.match(word):
            return None
        return "is the command name: a value must not choose the program to run"
    if "\0" in rest[0] or _DYNAMIC in rest[0]:
        shown = rest[0].replace("\0", "${…}").replace(_DYNAMIC, "$…")
        return f"is an argument of {shown!r}, a command name computed at run time"
    for k, w in enumerate(rest):
        if program_name(w) in SHELLS and any(
            len(o) > 1 and o[0] == "-" and o[1] != "-" and "c" in o for o in rest[k + 1 :]
        ):
            return f"is inside a nested {w} -c script"
    name = program_name(rest[0])
    if name in _EVALUATORS:
        return f"is an argument of {name}, which runs it as shell code"
    if name in _NAMERS or (name == "printf" and "-v" in rest[1:]):
        return f"is an argument of {name}, which takes variable names (bash runs a[$(…)])"
    if name in ("test", "[") and rest[-1:] in (["-v"], ["-R"]):
        return f"is a variable name for {name} -v (bash runs a[$(…)])"
    if name in _DECLARERS:
        if any(o[:1] in "-+" and set(o[1:]) & set("aAin") for o in rest[1:]):
            return f"is an argument of {name} with an array, integer or nameref attribute"
        if "=" not in word:
            return f"is a variable name or option of {name}"
    return None


class _Lexer:
    """One pass over a script, following POSIX sh quoting (and bash/zsh extensions)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.slots: list[Slot] = []
        # (delimiter, strip tabs, quoted, read into a variable by `read`)
        self.heredocs: list[tuple[str, bool, bool, bool]] = []
        self.uncertain: str | None = None
        if _RC_QUOTES.search(text):  # zsh: '' inside '…' would mean a quote
            self.uncertain = "in a script that sets zsh's RC_QUOTES"
        self.depth_of_nesting = 0
        self.command = _Command([])
        # where values assigned to variables may be evaluated as arithmetic (bash runs
        # a[$(cmd)] found in such a value): assignments of placeholders are refused
        self.arithmetic = _ARITHMETIC.search(text) is not None
        self.functions = {a or b for a, b in _FUNCTION.findall(text)}

    # -- helpers ---------------------------------------------------------------------------

    def _fail(self, why: str, at: int | None = None) -> UnsafeScript:
        at = self.pos if at is None else at
        return UnsafeScript(f"{why} (at offset {at} of the script)")

    def _placeholder(self, at: int) -> re.Match[str] | None:
        return PLACEHOLDER.match(self.text, at)

    def _slot(self, match: re.Match[str], context: Context, forbid: str | None) -> None:
        name = f"${{trialParameters.{match.group(1)}}}"
        if forbid:
            raise self._fail(f"{name} {forbid}", match.start())
        if self.uncertain:
            raise self._fail(f"{name} comes {self.uncertain}", match.start())
        if context is not Context.SINGLE and self.text.endswith("$", 0, match.start()):
            raise self._fail(f"{name} follows a $", match.start())
        command = self.command
        if command.test:
            raise self._fail(f"{name} is inside [[ … ]] (evaluated as arithmetic)", match.start())
        if command.duplicate:
            raise self._fail(
                f"{name} is the target of >& or <& (bash expands it twice)", match.start()
            )
        if _SUBSCRIPT.match(command.word):
            raise self._fail(f"{name} is inside an array subscript", match.start())
        problem = (
            _command_problem(command.words, command.word, command.redirect)
            or self._assignment_problem()
        )
        if problem:
            raise self._fail(f"{name} {problem}", match.start())
        self.slots.append(Slot(match.start(), match.end(), match.group(1), context))

    def _no_escaped_placeholder(self) -> None:
        match = self._placeholder(self.pos + 1)
        if match:
            raise self._fail(f"{match.group(0)} follows a backslash", match.start())

    def _refuse_in(self, start: int, end: int, where: str) -> None:
        found = PLACEHOLDER.search(self.text, start, end)
        if found:
            raise self._fail(f"{found.group(0)} is inside {where}", found.start())

    def _assignment_problem(self) -> str | None:
        if not self.arithmetic:
            return None
        words = _command_words(self.command.words)
        assigned = (not words and _ASSIGNMENT.match(self.command.word)) or (
            words and (words[0] in _ASSIGNERS or words[0] in self.functions)
        )
        if not assigned:
            return None
        return (
            "is assigned to a variable or parameter in a script that uses arithmetic, where "
            "bash evaluates a variable's value as an expression (and runs a[$(…)] in it); "
            "pass it to the program as an argument instead"
        )

    # -- bare level ------------------------------------------------------------------------

    def commands(self, closer: str | None, forbid: str | None, arithmetic: bool = False) -> None:
        """Lex commands until ``closer`` (``)`` of ``$(``) at depth 0, or the end.

        ``arithmetic``: an expression, not commands (``<<`` is a shift, not a here-document).
        """
        text, depth = self.text, 0
        saved, self.command = self.command, _Command([])
        command = self.command
        while self.pos < len(text):
            c = text[self.pos]
            match = self._placeholder(self.pos)
            if match:
                self._slot(match, Context.BARE, forbid)
                command.word += "\0"  # not a keyword
                self.pos = match.end()
            elif c == "\\":
                self._no_escaped_placeholder()
                if text.startswith("\n", self.pos + 1):
                    self.pos += 2
                else:
                    command.word += text[self.pos + 1 : self.pos + 2]
                    command.quoted = True
                    self.pos += 2
            elif c == "'":
                command.quoted = True
                self._single(forbid)
            elif c == '"':
                command.quoted = True
                self._double(forbid)
            elif c == "`":
                command.quoted = True
                self._backtick()
            elif c == "$":
                command.quoted = True
                self._dollar(forbid, bare=True)
            elif c == "#" and not command.word and not command.quoted:
                end = text.find("\n", self.pos)
                end = len(text) if end == -1 else end
                found = PLACEHOLDER.search(text, self.pos, end)
                if found:
                    raise self._fail(f"{found.group(0)} is in a comment", found.start())
                self.pos = end
            elif c in " \t":
                command.end_word(self)
                self.pos += 1
            elif c == "\n":
                command.end_word(self)
                command.end_command()
                self.pos += 1
                self._heredoc_bodies()
            elif c in _OPERATORS:
                command.end_word(self)
                if c == "(":
                    if text.startswith("((", self.pos) and not _command_words(command.words):
                        self.pos += 2
                        self._nested("is inside ((…)) arithmetic", arithmetic=True)
                        continue
                    depth += 1
                elif c == ")":
                    if closer == ")" and depth == 0:
                        self.pos += 1
                        self.command = saved
                        return
                    depth -= 1
                if c == "&" and text.startswith("&>", self.pos) and not arithmetic:
                    self.pos += 1  # &> and &>> redirect both outputs
                    c = ">"
                if c in "<>" and not arithmetic:
                    self._redirection()
                    continue
                command.end_command()
                self.pos += 1
            else:
                command.word += c
                self.pos += 1
        if closer:
            raise self._fail(f"unterminated $( or (( (expected {closer!r})")
        self.command = saved

    def _redirection(self) -> None:
        text, command = self.text, self.command
        if text.startswith("<<<", self.pos):
            self.pos += 3
        elif text.startswith("<<", self.pos):
            strip = text.startswith("<<-", self.pos)
            self.pos += 3 if strip else 2
            self._heredoc_word(strip)
            return
        elif text.startswith(("<(", ">("), self.pos):
            self.pos += 2
            self._nested("is inside a process substitution <(…)")
            return
        else:
            self.pos += 1
            while self.pos < len(text) and text[self.pos] in "<>&|":
                self.pos += 1
            command.duplicate = text[self.pos - 1] == "&"
            if text[self.pos - 1] == "&" and text[self.pos : self.pos + 1] == "-":
                self.pos += 1
        command.redirect = True

    def _heredoc_word(self, strip: bool) -> None:
        text = self.text
        while self.pos < len(text) and text[self.pos] in " \t":
            self.pos += 1
        start = self.pos
        while self.pos < len(text) and text[self.pos] not in " \t\n;&|()<>":
            c = text[self.pos]
            if c in "'\"":
                end = text.find(c, self.pos + 1)
                if end == -1:
                    raise self._fail("unterminated here-document delimiter")
                self.pos = end + 1
            else:
                self.pos += 2 if c == "\\" else 1
        raw = text[start : self.pos]
        if PLACEHOLDER.search(raw):
            raise self._fail("a placeholder is in a here-document delimiter", start)
        if re.search(r"[$`]", raw):
            self.uncertain = self.uncertain or f"after the here-document delimiter {raw}"
        delimiter = re.sub(r"\\(.)|['\"]", lambda m: m.group(1) or "", raw)
        words = _command_words(self.command.words)
        read = bool(words) and words[0] == "read" and not self.depth_of_nesting
        self.heredocs.append((delimiter, strip, raw != delimiter, read))

    def _heredoc_bodies(self) -> None:
        """Skip the here-document bodies that start on this line. A placeholder in one is
        allowed only where the body is data read into a variable (``read -r VAR <<EOM``,
        the shape Katib's SDK writes for ``tune()``), and in an unquoted body only before any
        ``$(``, ``${`` or backtick (where the shell would run or expand it as code)."""
        text = self.text
        for delimiter, strip, quoted, read in self.heredocs:
            expanding = False  # the body so far opened a $( ${ $[ or ` (unquoted bodies)
            while self.pos < len(text):
                end = text.find("\n", self.pos)
                end = len(text) if end == -1 else end
                line = text[self.pos : end]
                if not quoted and _odd_backslashes(line):  # shells differ on continuing it
                    self.uncertain = self.uncertain or "after a here-document line ending in \\"
                at = 0
                for found in PLACEHOLDER.finditer(line):
                    before = line[at : found.start()]
                    expanding = expanding or (not quoted and _EXPANDS.search(before) is not None)
                    self._heredoc_slot(found, self.pos, read, quoted, expanding)
                    at = found.end()
                expanding = expanding or (not quoted and _EXPANDS.search(line[at:]) is not None)
                self.pos = end + 1
                if (line.lstrip("\t") if strip else line) == delimiter:
                    break
        self.pos = min(self.pos, len(text))
        self.heredocs = []

    def _heredoc_slot(
        self, found: re.Match[str], offset: int, read: bool, quoted: bool, expanding: bool
    ) -> None:
        start = offset + found.start()
        name = found.group(0)
        if not read:
            raise self._fail(
                f"{name} is inside a here-document (allowed only in one read into a variable, "
                "read -r VAR <<EOM, as Katib's SDK writes)",
                start,
            )
        if expanding:
            raise self._fail(
                f"{name} is inside a here-document after a $(, ${{ or backtick (the shell may "
                "run it as code)",
                start,
            )
        if self.uncertain:
            raise self._fail(f"{name} comes {self.uncertain}", start)
        context = Context.HEREDOC_LITERAL if quoted else Context.HEREDOC
        self.slots.append(Slot(start, offset + found.end(), found.group(1), context))

    # -- quoted forms ----------------------------------------------------------------------

    def _single(self, forbid: str | None) -> None:
        end = self._quote_end(self.pos + 1, "'")
        at = self.pos + 1
        while True:
            found = PLACEHOLDER.search(self.text, at, end)
            if not found:
                break
            self._slot(found, Context.SINGLE, forbid)
            at = found.end()
        self.command.word += PLACEHOLDER.sub("\0", self.text[self.pos + 1 : end])
        self.pos = end + 1

    def _quote_end(self, start: int, quote_char: str) -> int:
        """End of a '…' quote starting at ``start``; placeholders are skipped whole."""
        at = start
        while True:
            end = self.text.find(quote_char, at)
            if end == -1:
                raise self._fail(f"unterminated {quote_char}", start - 1)
            inside = [m for m in PLACEHOLDER.finditer(self.text, at, end + 1) if m.end() > end]
            if not inside:
                return end
            at = inside[0].end()

    def _double(self, forbid: str | None) -> None:
        text = self.text
        self.pos += 1
        while self.pos < len(text):
            c = text[self.pos]
            match = self._placeholder(self.pos)
            if match:
                self._slot(match, Context.DOUBLE, forbid)
                self.command.word += "\0"
                self.pos = match.end()
            elif c == "\\":
                self._no_escaped_placeholder()
                escaped = text[self.pos + 1 : self.pos + 2]
                if escaped in ("$", "`", '"', "\\"):
                    self.command.word += escaped
                elif escaped != "\n":
                    self.command.word += "\\" + escaped
                self.pos += 2
            elif c == '"':
                self.pos += 1
                return
            elif c == "`":
                self._backtick()
            elif c == "$":
                self._dollar(forbid, bare=False)
            else:
                self.command.word += c
                self.pos += 1
        raise self._fail('unterminated "')

    def _backtick(self) -> None:
        """Skip `…`: a placeholder inside is refused; quotes inside make the rest uncertain."""
        text, start = self.text, self.pos
        self.pos += 1
        while self.pos < len(text) and text[self.pos] != "`":
            if text[self.pos] in "'\"":
                self.uncertain = self.uncertain or f"after `…` with quotes at offset {start}"
            self.pos += 2 if text[self.pos] == "\\" else 1
        self._refuse_in(start, self.pos, "`…` command substitution")
        if self.pos >= len(text):
            raise self._fail("unterminated `", start)
        self.pos += 1
        self.command.word += _DYNAMIC

    def _dollar(self, forbid: str | None, *, bare: bool) -> None:
        text, start = self.text, self.pos
        nxt = text[self.pos + 1 : self.pos + 2]
        if text.startswith("$((", self.pos):
            self.pos += 3
            self._nested("is inside $((…)) arithmetic", arithmetic=True)
        elif nxt == "(":
            self.pos += 2
            self._nested("is inside $(…) command substitution")
        elif nxt == "{":
            self._braced()
        elif nxt == "[":
            end = text.find("]", self.pos)
            end = len(text) if end == -1 else end
            self._refuse_in(start, end, "$[…] arithmetic")
            self.pos = end + 1
        elif bare and nxt == "'":
            self.pos += 2
            while self.pos < len(text) and text[self.pos] != "'":
                self.pos += 2 if text[self.pos] == "\\" else 1
            self._refuse_in(start, self.pos, "$'…'")
            if self.pos >= len(text):
                raise self._fail("unterminated $'", start)
            content = text[start + 2 : self.pos]
            self.command.word += _DYNAMIC if "\\" in content else content
            self.pos += 1
            return
        elif bare and nxt == '"':
            self.pos += 1
            self._double('is inside $"…" (translated text)')
            return
        elif not re.match(r"[A-Za-z0-9_@*#?$!-]", nxt):
            self.command.word += "$"  # a literal $
            self.pos += 1
            return
        else:
            self.pos += 1
        self.command.word += _DYNAMIC

    def _nested(self, why: str, *, arithmetic: bool = False) -> None:
        """Lex a nested command list (``$(``, ``((``, ``<(``) up to its ``)``."""
        self.depth_of_nesting += 1
        heredocs, self.heredocs = self.heredocs, []
        self.commands(closer=")", forbid=why, arithmetic=arithmetic)
        if arithmetic:  # $(( … )) ends with a second ")"
            if not self.text.startswith(")", self.pos):
                raise self._fail("unterminated $((")
            self.pos += 1
        self.heredocs = heredocs + self.heredocs
        self.depth_of_nesting -= 1

    def _braced(self) -> None:
        """Skip ``${…}``: a placeholder inside is refused, quotes make the rest uncertain."""
        text, start = self.text, self.pos
        self.pos += 2
        depth = 1
        while self.pos < len(text):
            c = text[self.pos]
            if c == "\\":
                self.pos += 2
                continue
            if c in "'\"`":
                self.uncertain = self.uncertain or f"after ${{…}} with quotes at offset {start}"
            elif c == "{" and text[self.pos - 1] == "$":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
            self.pos += 1
        self._refuse_in(start + 2, self.pos, "a ${…} parameter expansion")
        if self.pos >= len(text):
            raise self._fail("unterminated ${", start)
        self.pos += 1
