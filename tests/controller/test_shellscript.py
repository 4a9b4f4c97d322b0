"""controller.shellscript: finding the script a shell runs, the quoting context of each
placeholder, quoting per context, refusals; and a property test that runs real shells."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.shellscript import (
    Context,
    Invocation,
    UnsafeScript,
    analyse,
    find_script,
    quote,
    render,
)
from controller.templating import TemplateError, TrialMeta, primary_container, render_trial_job

P = "${trialParameters.v}"
SHELLS_HERE = [s for s in ("sh", "bash", "dash", "zsh") if shutil.which(s)]


@pytest.mark.parametrize(
    ("argv", "script"),
    [
        (["sh", "-c", "x"], 2),
        (["/bin/bash", "-ec", "x"], 2),
        (["bash", "-x", "-c", "x"], 3),
        (["bash", "-o", "pipefail", "-c", "x"], 4),
        (["bash", "-euo", "pipefail", "-c", "x"], 4),
        (["bash", "-lc", "x", "name", "arg"], 2),
        (["bash", "--login", "-c", "x"], 3),
        (["bash", "-O", "extglob", "-c", "x"], 4),
        (["zsh", "+o", "nomatch", "-c", "x"], 4),
        (["/usr/bin/env", "sh", "-c", "x"], 3),
        (["env", "-i", "A=1", "B=2", "dash", "-c", "x"], 6),
        (["env", "-u", "HOME", "--chdir=/tmp", "bash", "-c", "x"], 6),
        (["env", "-uHOME", "-C", "/tmp", "--", "ash", "-c", "x"], 7),
        (["env", "env", "X=1", "ksh", "-c", "x"], 5),
    ],
)
def test_finds_the_script_behind_env_and_options(argv: list[str], script: int) -> None:
    assert find_script(argv) == Invocation(script=script)


@pytest.mark.parametrize(
    "argv",
    [
        ["python", "-c", "print(1)"],
        ["sh", "script.sh", "-c"],
        ["bash", "-x", "train.sh"],
        ["sh", "-c"],
        ["env", "A=1", "python", "-c", "x"],
    ],
)
def test_no_script(argv: list[str]) -> None:
    assert find_script(argv).script is None
    assert find_script(argv).opaque is None


@pytest.mark.parametrize(
    ("argv", "opaque"),
    [
        (["env", "-S", "sh -c x"], 1),
        (["env", "--split-string=sh -c x"], 1),
        (["timeout", "5", "sh", "-c", "x"], 2),
        (["nice", "-n", "5", "/bin/bash", "-lc", "x"], 3),
    ],
)
def test_shells_reached_in_ways_not_analysed_are_opaque(argv: list[str], opaque: int) -> None:
    invocation = find_script(argv)
    assert (invocation.script, invocation.opaque) == (None, opaque)
    assert invocation.reason


@pytest.mark.parametrize(
    ("script", "contexts"),
    [
        (f"prog --v={P}", [Context.BARE]),
        (f'prog "--v={P}"', [Context.DOUBLE]),
        (f"prog '--v={P}'", [Context.SINGLE]),
        (f"prog {P} \"{P}\" '{P}'", [Context.BARE, Context.DOUBLE, Context.SINGLE]),
        (f"cd /x && python y.py --a {P} --b {P}", [Context.BARE, Context.BARE]),
        (f"export LR={P}; python t.py", [Context.BARE]),
        (f"X={P} prog", [Context.BARE]),
        (f"prog {P} > out.txt 2>&1 # done", [Context.BARE]),
        (f'echo $(date) "$(id -u)" `hostname` {P}', [Context.BARE]),
        (f"cat <<'EOF'\nit's \"$x\nEOF\nprog '{P}'", [Context.SINGLE]),
        (f"for i in 1 2; do prog {P}; done", [Context.BARE]),
        (f"x=$(( 1 + (2) )); prog {P}", [Context.BARE]),
        (f"prog \\\\{P} \"\\\\{P}\" '\\{P}'", [Context.BARE, Context.DOUBLE, Context.SINGLE]),
        (f"case {P} in a) echo;; esac", [Context.BARE]),
        (f"prog <<< {P}", [Context.BARE]),
        (f'prog "a\\"b {P}"', [Context.DOUBLE]),
        (f"prog 'it'\\''s {P}'", [Context.SINGLE]),
        (f"echo a#{P}", [Context.BARE]),
        (f"local x={P}", [Context.BARE]),
        (f"X={P}; prog \"$X\"; echo $(( 1 << 2 ))\nprog '{P}'", None),
        (f"echo $(( 1 << 2 )) 'it''s' {P}", [Context.BARE]),
        (f"(( 1 << 2 )); prog '{P}'", [Context.SINGLE]),
        (f"prog {P} $(( 2 ))", [Context.BARE]),
        (f"X={P} prog > {P}", [Context.BARE, Context.BARE]),
        (f"prog &> log {P} 2>&1 >|x {P}", [Context.BARE, Context.BARE]),
        (f"'my prog' {P}", [Context.BARE]),
    ],
)
def test_contexts(script: str, contexts: list[Context] | None) -> None:
    if contexts is None:  # arithmetic elsewhere in the script: the assignment is refused
        with pytest.raises(UnsafeScript, match="uses arithmetic"):
            analyse(script)
    else:
        assert [slot.context for slot in analyse(script)] == contexts


@pytest.mark.parametrize(
    ("script", "why"),
    [
        (f"cat <<EOF\n{P}\nEOF", "inside a here-document"),
        (f"cat <<-'EOF'\n\tx {P}\n\tEOF", "inside a here-document"),
        (f"bash <<EOF\n{P}\nEOF", "inside a here-document"),
        (f"read -r V <<EOF\n$(prog) {P}\nEOF", "after a $(, ${ or backtick"),
        (f"read -r V <<EOF\n`prog\n{P}`\nEOF", "after a $(, ${ or backtick"),
        (f"read -r V <<EOF\n${{X}}{P}\nEOF", "after a $(, ${ or backtick"),
        (f"X=$(read -r V <<EOF\n{P}\nEOF\n)", "inside a here-document"),
        (f"cat <<{P}\nx\n", "here-document delimiter"),
        (f"eval prog {P}", "argument of eval"),
        (f"exec eval 'prog {P}'", "argument of eval"),
        (f"trap 'rm {P}' EXIT", "argument of trap"),
        (f"sh -c 'prog {P}'", "nested sh -c"),
        (f'bash -lc "prog {P}"', "nested bash -c"),
        (f"timeout 5 /bin/sh -ec 'prog {P}'", "nested /bin/sh -c"),
        (f"echo $(prog {P})", "inside $(…)"),
        (f'echo "$(prog "{P}")"', "inside $(…)"),
        ("echo `prog " + P + "`", "inside `…`"),
        (f"echo ${{x:-{P}}}", "parameter expansion"),
        (f'echo "${{x:-{P}}}"', "parameter expansion"),
        (f"# {P}", "in a comment"),
        (f"prog; #x {P}", "in a comment"),
        (f"(( x = {P} ))", "((…)) arithmetic"),
        (f"[[ {P} -eq 1 ]]", "[[ … ]]"),
        (f"echo $(( {P} + 1 ))", "$((…)) arithmetic"),
        (f"echo $[ {P} + 1 ]", "$[…] arithmetic"),
        (f"let x={P}", "argument of let"),
        (f"declare -i x={P}", "integer"),
        (f"export {P}=1", "variable name"),
        (f"a[{P}]=1", "array subscript"),
        (f"prog \\{P}", "follows a backslash"),
        (f'prog "\\{P}"', "follows a backslash"),
        (f"prog ${P}", "follows a $"),
        (f"prog $'{P}'", "inside $'…'"),
        (f'prog $"{P}"', 'inside $"…"'),
        (f"prog <(echo {P})", "process substitution"),
        (f"prog 'x {P}", "unterminated '"),
        (f'prog "x {P}', 'unterminated "'),
        (f"echo `date +'%s'` {P}", "after `…` with quotes"),
        (f"echo ${{x:-'a'}} {P}", "after ${…} with quotes"),
        (f"x=$(case a in a) echo;; esac) {P}", "after a case statement"),
        (f"'ev'al prog {P}", "argument of eval"),
        (f'"eval" prog {P}', "argument of eval"),
        (f"\\eval prog {P}", "argument of eval"),
        (f"$'eval' prog {P}", "argument of eval"),
        (f"nice -n 5 timeout -s KILL 10 eval {P}", "argument of eval"),
        (f"time -p exec -a name eval {P}", "argument of eval"),
        (f"$CMD --lr={P}", "computed at run time"),
        (f'"$HOME/bin/prog" {P}', "computed at run time"),
        (f"$(which python) --lr={P}", "computed at run time"),
        (f"{P} --x", "the command name"),
        (f"cd /x && exec {P}", "the command name"),
        (f"{P} {P}", "the command name"),
        (f"read {P} <<< 1", "argument of read"),
        (f"setopt rc_quotes; prog '{P}'", "RC_QUOTES"),
        (f"prog >&{P}", "target of >&"),
        (f"prog 2>&1{P}", "target of >&"),
        (f"prog <& '{P}'", "target of >&"),
        (f"printf -v {P} x", "argument of printf"),
        (f"[ -v {P} ]", "variable name for [ -v"),
        (f"X={P}; (( X > 0 )) && prog", "uses arithmetic"),
        (f"export N={P}; for ((i=0; i<N; i++)); do prog; done", "uses arithmetic"),
        (f"f() {{ echo $(( $1 + 1 )); }}; f {P}", "uses arithmetic"),
        (f"set -- {P}; [[ $1 -eq 1 ]]", "uses arithmetic"),
        (f"for x in {P}; do let y=x; done", "uses arithmetic"),
        (f"cat <<EOF\nx\\\nEOF\nprog {P}\nEOF", "here-document line ending"),
        (f"cat <<$E\nx\n$E\nprog {P}", "after the here-document delimiter"),
    ],
)
def test_refusals_say_why(script: str, why: str) -> None:
    with pytest.raises(UnsafeScript) as caught:
        analyse(script)
    assert why in str(caught.value)


@pytest.mark.parametrize(
    ("value", "context", "expected"),
    [
        ("0.01", Context.BARE, "0.01"),
        ("adam", Context.BARE, "adam"),
        ("", Context.BARE, "''"),
        ("a b", Context.BARE, "'a b'"),
        ("it's", Context.BARE, "'it'\\''s'"),
        ("=ls", Context.BARE, "'=ls'"),
        ("a b'c", Context.DOUBLE, "a b'c"),
        ("$HOME", Context.DOUBLE, "\"'$HOME'\""),
        ("a!b", Context.DOUBLE, "\"'a!b'\""),
        ('x"y', Context.DOUBLE, '"\'x"y\'"'),
        ("it's", Context.SINGLE, "it'\\''s"),
        ("$(x)\n`y`", Context.SINGLE, "$(x)\n`y`"),
    ],
)
def test_quote(value: str, context: Context, expected: str) -> None:
    assert quote(value, context) == expected


def test_render_quotes_each_context_and_names_missing_values() -> None:
    script = f"prog {P} \"--v={P}\" '--w={P}' ~{P}"
    assert render(script, {"v": "a'b"}, KeyError) == (
        "prog 'a'\\''b' \"--v=a'b\" '--w=a'\\''b' ~'a'\\''b'"
    )
    with pytest.raises(KeyError):
        render(script, {}, KeyError)


# -- the property: values arrive verbatim, nothing runs -------------------------------------

HOSTILE = [
    "$(touch X)",
    "`touch X`",
    "; touch X",
    "'",
    '"',
    "\n",
    "| touch X",
    "&& touch X",
    "$HOME",
    "*",
    "a'b\"c`d$(e)",
]
FRAGMENTS = [*HOSTILE, " ", "\\", "$", "!", "~", "{", "}", "(", ")", "=", "#", "\t", "%s", "-"]
VALUES = st.one_of(
    st.text(st.characters(exclude_characters="\0", exclude_categories=("Cs",))),
    st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join),
)
PRINT = "printf '%s\\0'"
SHAPES = {
    "sh -c bare": ["sh", "-c", f"{PRINT} --v={P} > out"],
    "sh -c double": ["sh", "-c", f'{PRINT} "--v={P}" > out'],
    "sh -c single": ["sh", "-c", f"{PRINT} '--v={P}' > out"],
    "bash -o pipefail -c": ["bash", "-o", "pipefail", "-c", f"{PRINT} --v={P} | cat > out"],
    "env sh -c": ["/usr/bin/env", "sh", "-c", f'{PRINT} "--v={P}" > out'],
    "env A=1 bash -lc": [
        "env",
        "-u",
        "X",
        "A=1",
        "bash",
        "--noprofile",
        "-lc",
        f"cd . && {PRINT} '--v={P}'>out",
    ],
    "sh -euc": ["/bin/sh", "-eu", "-c", f'X={P}; {PRINT} "--v=$X" > out'],
}


def _run(argv: list[str], value: str) -> None:
    """Render ``argv`` with ``value``, run it, assert the program got ``--v=<value>`` only."""
    job = {"spec": {"containers": [{"name": "c", "command": argv[:1], "args": argv[1:]}]}}
    rendered = render_trial_job(
        job, [{"name": "v", "reference": "v"}], {"v": value}, TrialMeta("t")
    )
    container = primary_container(rendered, "c")
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [*container["command"], *container["args"]], cwd=folder, check=True, timeout=20
        )
        got = (Path(folder) / "out").read_bytes()
        assert got == f"--v={value}".encode() + b"\0"
        assert sorted(p.name for p in Path(folder).iterdir()) == ["out"]


@pytest.mark.parametrize("shape", SHAPES)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES)
def test_values_arrive_verbatim_in_every_shape(shape: str, value: str) -> None:
    _run(SHAPES[shape], value)


@pytest.mark.parametrize("shell", SHELLS_HERE)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES)
def test_values_arrive_verbatim_in_every_shell_and_context(shell: str, value: str) -> None:
    script = (
        f"{PRINT} --v={P} \"--v={P}\" '--v={P}' --v=\"a\"{P}'b' > out; "
        f'exec 3<out; set -- $(printf x); X={P}; {PRINT} "--v=$X" >> out'
    )
    job = {"spec": {"containers": [{"name": "c", "command": [shell, "-c", script]}]}}
    rendered = render_trial_job(
        job, [{"name": "v", "reference": "v"}], {"v": value}, TrialMeta("t")
    )
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(primary_container(rendered, "c")["command"], cwd=folder, check=True)
        expected = [f"--v={value}"] * 3 + [f"--v=a{value}b", f"--v={value}"]
        assert (Path(folder) / "out").read_bytes() == b"".join(
            e.encode() + b"\0" for e in expected
        )
        assert sorted(p.name for p in Path(folder).iterdir()) == ["out"]


# -- the property over templates: whatever the script, an accepted one never runs a value ----

PIECES = [
    *[" ", " ", " ", "\n", ";", "&&", "||", "|", ">/dev/null", "\t", "\\\n", "2>&1", "&>x"],
    *["'", '"', "\\", "$", "`", ")", "{ ", "}", "$(", "${", "$((", "((", "))", "[[", "]]"],
    *["#", "<<", "<<-", "EOF", "\nEOF\n", "<<<", "<(", "$'", '$"', "~", "*", "!", "=", "x="],
    *["x[", "]", "1", "echo", "printf %s", "eval", "export ", "declare -i ", "let ", "cat"],
    *["case", " in ", "esac", "a)", ";;", "if", "then", "fi", "true", "sh -c", "bash -c"],
    *["'a b'", '"a $x b"', "$(echo a)", "`echo a`", "cat <<EOF\na 'b\nEOF\n", "# c'\n"],
    *["cat <<'EOF'\n\"\nEOF\n", "case a in a) echo;; esac", "(( 1 << 2 ))", "[[ a == b ]]"],
    *["echo $(( 1 + 2 ))", "${x:-a}", "f() { echo $1; }", "f", "$x", "X=1", "'it'\\''s'"],
    *[P, P, P, P, f"'{P}'", f'"{P}"', f"--v={P}", f'"a {P} b"', f"'a {P} b'", f"x={P}"],
]
TEMPLATES = st.lists(st.sampled_from(PIECES), min_size=1, max_size=10).map("".join)
HOSTILE_RUN = st.sampled_from(
    [
        "$(touch X)",
        "`touch X`",
        ";touch X;",
        "'; touch X; '",
        '"; touch X; "',
        "\ntouch X\n",
        "a[$(touch X)]",
        "|touch X",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template=TEMPLATES, value=HOSTILE_RUN)
def test_no_accepted_template_runs_a_value(template: str, value: str) -> None:
    try:
        script = render(template, {"v": value}, KeyError)
    except UnsafeScript:
        return  # refused at validation: fine
    for shell in [s for s in ("dash", "bash", "zsh") if s in SHELLS_HERE]:
        with tempfile.TemporaryDirectory() as folder:
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    [shell, "-c", script],
                    cwd=folder,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=10,
                )
            assert not [p.name for p in Path(folder).iterdir() if p.name.startswith("X")], (
                shell,
                script,
            )


HEREDOC_SHAPES = {
    "unquoted": f'IFS= read -r V <<EOM\n--v={P}\nEOM\n{PRINT} "$V" > out',
    "quoted": f"IFS= read -r V <<'EOM'\n--v={P}\nEOM\n{PRINT} \"$V\" > out",
    "katib sdk": (  # the shape kubeflow-katib's tune() writes (bash's read -d '')
        f"read -r -d '' V << EOM\n--v={P}\nEOM\n{PRINT} \"$V\" > out"
    ),
}


def test_a_here_document_read_into_a_variable_takes_values_escaped() -> None:
    script = HEREDOC_SHAPES["unquoted"]
    assert [slot.context for slot in analyse(script)] == [Context.HEREDOC]
    quoted = HEREDOC_SHAPES["quoted"]
    assert [slot.context for slot in analyse(quoted)] == [Context.HEREDOC_LITERAL]
    assert quote("a$b`c`\\d", Context.HEREDOC) == "a\\$b\\`c\\`\\\\d"
    assert quote("a$b", Context.HEREDOC_LITERAL) == "a$b"
    with pytest.raises(UnsafeScript, match="line break"):
        quote("a\nEOM", Context.HEREDOC)


@pytest.mark.parametrize("shape", HEREDOC_SHAPES)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES)
def test_values_arrive_verbatim_through_a_here_document(shape: str, value: str) -> None:
    argv = ["bash", "-c", HEREDOC_SHAPES[shape]]
    if "\n" in value or "\r" in value:  # could end the here-document: refused per trial
        with pytest.raises(TemplateError, match="line break"):
            _run(argv, value)
    elif shape == "katib sdk" and value != value.strip(" \t\n"):
        pass  # read -d '' with the default IFS trims the ends: Katib's script, not the quoting
    else:
        _run(argv, value)
