"""User names as people are known: one form per person, and names that mix scripts.

A name from proxy authentication or a front proxy's header is normalised before it keys
the pseudonym, the notice or the daily count: Unicode NFKC (a full-width `ａｌｉｃｅ` is
`alice`) and, where the directory ignores case (Active Directory does), case folding.
What normalisation cannot join is a name that mixes scripts to look like another
(`аlice` with a Cyrillic `а`): such names are flagged in the record, after UTS #39's
"highly restrictive" rule (Latin may mix only with Han, Hiragana, Katakana, Bopomofo or
Hangul as CJK writing does). Pure.
"""

from __future__ import annotations

import functools
import unicodedata

# Scripts that may appear together in one name (UTS #39, highly restrictive).
_CJK_MIXES = (
    frozenset({"LATIN", "CJK", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "CJK", "BOPOMOFO"}),
    frozenset({"LATIN", "CJK", "HANGUL"}),
)
_CACHED = 65536


@functools.lru_cache(maxsize=_CACHED)
def normalize_name(name: str, fold_case: bool) -> str:
    """NFKC, then case-folded when names compare without case."""
    text = unicodedata.normalize("NFKC", name)
    return text.casefold() if fold_case else text


@functools.lru_cache(maxsize=_CACHED)
def scripts_of(name: str) -> frozenset[str]:
    """The scripts of a name's letters (`LATIN`, `CYRILLIC`, `GREEK`, `CJK`, ...)."""
    found = set()
    for char in name:
        if char.isalpha():
            word = unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]
            found.add(word)
    return frozenset(found)


def mixed_scripts(name: str) -> str | None:
    """The scripts of a name that mixes them suspiciously (`cyrillic+latin`), or None."""
    scripts = scripts_of(name)
    if len(scripts) < 2 or any(scripts <= allowed for allowed in _CJK_MIXES):
        return None
    return "+".join(sorted(s.lower() for s in scripts))
