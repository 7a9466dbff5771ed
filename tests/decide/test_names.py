"""User names: one form per person, look-alikes flagged."""

from __future__ import annotations

import pytest

from auditproxy.decide.names import mixed_scripts, normalize_name


def test_nfkc_and_case_folding() -> None:
    assert normalize_name("\uff21lice", True) == "alice"  # full-width A
    assert normalize_name("ALICE", True) == "alice"
    assert normalize_name("ALICE", False) == "ALICE"
    assert normalize_name("Stra\u00dfe", True) == "strasse"


@pytest.mark.parametrize(
    ("name", "scripts"),
    [
        ("\u0430lice", "cyrillic+latin"),  # Cyrillic a, then Latin
        ("p\u0430ypal", "cyrillic+latin"),
        ("\u03b1lice", "greek+latin"),
    ],
)
def test_names_mixing_scripts_are_flagged(name: str, scripts: str) -> None:
    assert mixed_scripts(name) == scripts


SINGLE_SCRIPT = [
    "alice",
    "jean-fran\u00e7ois",
    "\u0430\u043b\u0438\u0441\u0430",  # all Cyrillic
    "\u5c71\u7530\u305f\u308d\u3046",  # Han and Hiragana, as Japanese is written
    "yamada\u592a\u90ce",  # Latin and Han
    "a.b_c-1",
]


@pytest.mark.parametrize("name", SINGLE_SCRIPT)
def test_single_script_and_cjk_names_are_not(name: str) -> None:
    assert mixed_scripts(name) is None
