"""Issue #15's policy keys: the notice's interval and short texts, the log's retention and
the contact named on the page "what is recorded about me", each checked with its line."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from auditproxy.policy.days import next_period, period_end, period_start
from auditproxy.policy.load import parse_policy
from auditproxy.policy.model import Contact, NoticeInterval, PolicyError
from support.paths import EXAMPLE_POLICY, POLICIES

SMALL = (POLICIES / "small.yaml").read_text()
TORONTO = ZoneInfo("America/Toronto")


def edited(old: str, new: str, text: str = SMALL) -> str:
    assert old in text, f"test setup: {old!r} not in policy"
    return text.replace(old, new, 1)


def problems_of(text: str) -> list[tuple[int, str]]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    return [(p.line, p.message) for p in info.value.problems]


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


# --- interval ------------------------------------------------------------------------------


def test_interval_is_a_day_unless_the_policy_says_otherwise():
    assert parse_policy(SMALL).notice.interval is NoticeInterval.DAY
    for value in ("day", "week", "month"):
        policy = parse_policy(edited("notice:\n", f"notice:\n  interval: {value}\n"))
        assert policy.notice.interval is NoticeInterval(value)


def test_an_unknown_interval_is_reported_with_its_line():
    text = edited("notice:\n", "notice:\n  interval: fortnight\n")
    assert problems_of(text) == [
        (
            line_of(text, "interval:"),
            "notice: interval: unknown value 'fortnight' (expected one of: day, week, month)",
        )
    ]


@pytest.mark.parametrize(
    ("day", "interval", "start", "following"),
    [
        (date(2026, 3, 4), NoticeInterval.DAY, date(2026, 3, 4), date(2026, 3, 5)),
        (date(2026, 3, 4), NoticeInterval.WEEK, date(2026, 3, 2), date(2026, 3, 9)),  # Wed
        (date(2026, 3, 1), NoticeInterval.WEEK, date(2026, 2, 23), date(2026, 3, 2)),  # Sun
        (date(2026, 3, 2), NoticeInterval.WEEK, date(2026, 3, 2), date(2026, 3, 9)),  # Mon
        (date(2026, 12, 31), NoticeInterval.MONTH, date(2026, 12, 1), date(2027, 1, 1)),
        (date(2024, 2, 29), NoticeInterval.MONTH, date(2024, 2, 1), date(2024, 3, 1)),
        (date(2026, 1, 31), NoticeInterval.MONTH, date(2026, 1, 1), date(2026, 2, 1)),
    ],
)
def test_periods_follow_the_calendar(day, interval, start, following):
    assert period_start(day, interval) == start
    assert next_period(day, interval) == following
    assert next_period(start, interval) == following


def test_a_period_ends_at_local_midnight_daylight_saving_included():
    # The week of 2026-03-02 ends at local midnight on Monday 9 March, a 167-hour week:
    # Toronto springs forward on Sunday 8 March.
    start = date(2026, 3, 2)
    hours = (period_end(start, NoticeInterval.WEEK, TORONTO) - _midnight(start)) / 3600
    assert hours == 7 * 24 - 1
    assert (
        period_end(date(2026, 11, 1), NoticeInterval.DAY, TORONTO) - _midnight(date(2026, 11, 1))
        == 25 * 3600
    )


def _midnight(day: date) -> float:
    from datetime import datetime

    return datetime(day.year, day.month, day.day, tzinfo=TORONTO).timestamp()


# --- the notice's short texts ------------------------------------------------------------


def test_short_texts_have_built_in_english_and_french():
    texts = parse_policy(SMALL).notice.texts
    assert texts["en"].summary.endswith("This network is monitored.")
    assert texts["fr"].summary.endswith("Ce r\u00e9seau est surveill\u00e9.")
    assert texts["en"].record_link == "What is recorded about me"
    assert texts["fr"].record_link == "Ce qui est enregistr\u00e9 \u00e0 mon sujet"


def test_short_texts_from_the_policy_and_dismiss_is_optional():
    text = edited(
        "      dismiss: Hide\n", "      summary: Be kind.\n      record_link: My record\n"
    )
    english = parse_policy(text).notice.texts["en"]
    assert (english.summary, english.record_link, english.dismiss) == ("Be kind.", "My record", "")
    assert english.sentence == "Be kind."


def test_another_language_reads_the_english_link_and_its_own_long_texts():
    text = edited("languages: [en, fr]", "languages: [en, fr, de]")
    text += (
        "    de:\n      heading: Hinweis\n      disclaimer: Ihre Meinung.\n"
        "      monitoring: Wird protokolliert.\n      policy_name: Richtlinie\n"
        "      link_text: Lesen\n      acknowledge: Verstanden\n"
    )
    text = text.replace("clients:\n", "", 0)
    german = parse_policy(_move_texts_last(text)).notice.texts["de"]
    assert german.sentence == "Ihre Meinung. Wird protokolliert."
    assert german.record_link == "What is recorded about me"


def _move_texts_last(text: str) -> str:
    """Append the extra language under notice.texts (the test policy's texts come before
    its clients section)."""
    head, _, rest = text.partition("clients:\n")
    extra_start = rest.index("    de:\n")
    extra = rest[extra_start:]
    return head + extra + "clients:\n" + rest[:extra_start]


def test_an_empty_summary_is_reported_with_its_line():
    text = edited("      dismiss: Hide\n", '      summary: ""\n')
    assert problems_of(text) == [
        (line_of(text, 'summary: ""'), "notice: texts: en: summary must not be empty")
    ]


# --- retention and contact ------------------------------------------------------------------


def test_retention_and_contact_are_optional():
    policy = parse_policy(SMALL)
    assert policy.logging.retention_days is None and policy.contact is None


def test_retention_and_contact_from_the_policy():
    text = edited("  url_path: true\n", "  url_path: true\n  retention_days: 90\n")
    text += "contact:\n  name: Privacy office\n  email: privacy@example.test\n"
    policy = parse_policy(text)
    assert policy.logging.retention_days == 90
    assert policy.contact == Contact("Privacy office", "privacy@example.test", None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "logging: retention_days must be between 1 and 36600, not 0"),
        ("99999", "logging: retention_days must be between 1 and 36600, not 99999"),
        ("0x10", "logging: retention_days must be between 1 and 36600, not 0x10"),
        ("ninety", "logging: retention_days must be a whole number of days, not text"),
        ("1.5", "logging: retention_days must be a whole number of days, not a number"),
    ],
)
def test_a_bad_retention_is_reported_with_its_line(value, message):
    text = edited("  url_path: true\n", f"  url_path: true\n  retention_days: {value}\n")
    assert problems_of(text) == [(line_of(text, "retention_days"), message)]


@pytest.mark.parametrize(
    ("contact", "needle", "message"),
    [
        ("  email: a@b.test\n", "contact:", "contact: missing required key 'name'"),
        ("  name: Office\n", "contact:", "contact: give an 'email' or a 'url' (or both)"),
        (
            "  name: Office\n  email: not-an-address\n",
            "email:",
            "contact: email 'not-an-address' is not an email address",
        ),
        (
            "  name: Office\n  url: ftp://x.test/\n",
            "url: ftp",
            "contact: url: 'ftp://x.test/' is not an http(s) URL",
        ),
        (
            "  name: Office\n  phone: 555\n",
            "phone:",
            "contact: unknown key 'phone' (expected one of: name, email, url)",
        ),
    ],
)
def test_a_bad_contact_is_reported_with_its_line(contact, needle, message):
    text = SMALL + "contact:\n" + contact
    problems = problems_of(text)
    assert (line_of(text, needle), message) in problems


def test_the_example_policy_names_its_contact_retention_and_short_texts():
    policy = parse_policy(EXAMPLE_POLICY.read_text())
    assert policy.contact is not None and policy.contact.email
    assert policy.logging.retention_days
    assert policy.notice.texts["en"].summary and policy.notice.texts["fr"].summary


def test_a_groups_notice_keeps_the_policys_interval():
    text = edited("  languages: [en, fr]\n", "  interval: week\n  languages: [en, fr]\n")
    text += "groups:\n  - name: fr-only\n    notice:\n      scope: all\n      languages: [fr]\n"
    policy = parse_policy(text)
    (group,) = policy.groups
    assert group.notice is not None and group.notice.languages == ("fr",)
    assert group.notice.interval is NoticeInterval.WEEK is policy.notice.interval
