"""GJSON paths as Katib's conditions use them, with GJSON's documented semantics."""

from __future__ import annotations

import pytest

from controller import gjson
from controller.gjson import MISSING, GjsonError

JOB_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
FRIENDS = {
    "name": {"first": "Tom", "last": "Anderson"},
    "age": 37,
    "children": ["Sara", "Alex", "Jack"],
    "fav.movie": "Deer Hunter",
    "friends": [
        {"first": "Dale", "last": "Murphy", "age": 44, "nets": ["ig", "fb", "tw"]},
        {"first": "Roger", "last": "Craig", "age": 68, "nets": ["fb", "tw"]},
        {"first": "Jane", "last": "Murphy", "age": 47, "nets": ["ig", "tw"]},
    ],
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("name.last", "Anderson"),
        ("age", 37),
        ("children", ["Sara", "Alex", "Jack"]),
        ("children.#", 3),
        ("children.1", "Alex"),
        ("child*.2", "Jack"),
        ("c?ildren.0", "Sara"),
        ("fav\\.movie", "Deer Hunter"),
        ("friends.#.first", ["Dale", "Roger", "Jane"]),
        ("friends.1.last", "Craig"),
        ('friends.#(last=="Murphy").first', "Dale"),
        ('friends.#(last=="Murphy")#.first', ["Dale", "Jane"]),
        ("friends.#(age>45)#.last", ["Craig", "Murphy"]),
        ('friends.#(first%"D*").last', "Murphy"),
        ('friends.#(first!%"D*").last', "Craig"),
        ('friends.#(nets.#(=="fb"))#.first', ["Dale", "Roger"]),
        ('friends.#(last=="Murphy")#|#', 2),
        ("friends.#(nets)#.first", ["Dale", "Roger", "Jane"]),
        ("name.middle", MISSING),
        ('friends.#(last=="Nobody").first', MISSING),
        ('friends.#(last=="Nobody")#', []),
        ("friends.#(age==44)#.first", ["Dale"]),
        ('friends.#(age=="44")#.first', []),  # a string never equals a number
        ("@this.age", 37),
        ("name.@this.first", "Tom"),
        ("[age,name.first]", [37, "Tom"]),
        ("[age,name.middle,children.#]", [37, 3]),
        ('name.[@this].#(first=="Tom")#.last', ["Anderson"]),
        ("[friends.#(age>45)#.first, name.last]|#", 2),
    ],
)
def test_gjson_paths(path: str, expected: object) -> None:
    assert gjson.get(FRIENDS, path) == expected


def job(*conditions: tuple[str, str]) -> dict:
    items = [
        {"type": t, "status": s, "reason": t + "Reason", "message": t + " message"}
        for t, s in conditions
    ]
    return {"status": {"conditions": items}}


def test_katib_argo_workflow_conditions() -> None:
    """Katib's Argo Workflow example wraps the status object in an array with ``[@this]``."""
    success = 'status.[@this].#(phase=="Succeeded")#'
    failure = 'status.[@this].#(phase=="Failed")#'
    assert gjson.condition_match({"status": {"phase": "Running"}}, success) is None
    assert gjson.condition_match({"status": {}}, failure) is None
    assert gjson.condition_match({}, success) is None
    done = gjson.condition_match({"status": {"phase": "Succeeded", "message": "ok"}}, success)
    assert done == {"phase": "Succeeded", "message": "ok"}


def test_katib_job_conditions() -> None:
    assert gjson.condition_match(job(), JOB_SUCCESS) is None
    assert gjson.condition_match({"status": {}}, JOB_FAILURE) is None
    assert gjson.condition_match(job(("Complete", "False")), JOB_SUCCESS) is None
    match = gjson.condition_match(job(("Failed", "False"), ("Complete", "True")), JOB_SUCCESS)
    assert match is not None and match["reason"] == "CompleteReason"
    failed = gjson.condition_match(job(("Failed", "True")), JOB_FAILURE)
    assert failed is not None and failed["message"] == "Failed message"


@pytest.mark.parametrize(
    "path",
    [
        "",
        "a..b",
        "a.",
        "a.@reverse",
        "a.@thisone",
        "a.{b,c}",
        "a.[b,c",
        "a.[b,]",
        "a.[b..c]",
        "a.#(b==)",
        'a.#(b=="x"',
        "a.#(b==bare)",
    ],
)
def test_unsupported_or_malformed_paths_raise(path: str) -> None:
    with pytest.raises(GjsonError):
        gjson.get(FRIENDS, path)
