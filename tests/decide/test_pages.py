from __future__ import annotations

from auditproxy.decide.pages import PAGE_HEADERS, ascii_html, blocked_page, refused_page
from auditproxy.policy.load import parse_policy


def test_blocked_page_names_site_and_policy_in_both_languages(small_policy_text):
    policy = parse_policy(small_policy_text)
    page = blocked_page(policy, "www.malware.test").decode("ascii")
    assert "This site is blocked" in page
    assert "Ce site est bloqu&#233;" in page
    assert "<strong>www.malware.test</strong>" in page
    assert "Test Policy" in page and "Politique d&#x27;essai" in page
    assert 'href="https://intranet.example.test/policy"' in page
    assert '<section lang="en">' in page and '<section lang="fr">' in page
    assert "<script" not in page and "<form" not in page and "<input" not in page


def test_refused_page(small_policy_text):
    page = refused_page(parse_policy(small_policy_text)).decode("ascii")
    assert "not available from your network" in page
    assert "IT service desk" in page


def test_pages_escape_hostile_texts(small_policy_text):
    text = small_policy_text.replace(
        "policy_name: Test Policy", 'policy_name: "<script>alert(1)</script>"'
    )
    page = blocked_page(parse_policy(text), '"><img src=x onerror=alert(1)>').decode("ascii")
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page


def test_ascii_html():
    assert ascii_html("r\u00e9seau <b>") == "r&#233;seau &lt;b&gt;"


def test_page_headers_lock_the_page_down():
    assert PAGE_HEADERS["Cache-Control"] == "no-store"
    assert "default-src 'none'" in PAGE_HEADERS["Content-Security-Policy"]
