"""Pages the proxy answers with itself: a blocked site, a refused client or destination.

Bilingual like the notice (the policy's languages; wording for English and French is
built in, other languages fall back to English). Pure ASCII with character references,
no script, no external resources, and never a form: the proxy never asks for credentials.
"""

from __future__ import annotations

import html

from auditproxy.policy.model import Policy

_WORDING = {
    "en": {
        "blocked_title": "This site is blocked",
        "blocked_body": "Access to {site} is blocked under the {policy}.",
        "refused_title": "This proxy is not available from your network",
        "refused_body": (
            "Your computer's address is not one the {policy} allows to use this proxy. "
            "Contact your IT service desk if you think this is a mistake."
        ),
        "destination_title": "The proxy does not connect there",
        "destination_body": (
            "{site} is an address this proxy never connects to for you (its own host, "
            "a loopback or link-local address, or one the {policy} excludes). Nothing was "
            "sent there."
        ),
        "bad_request_title": "This request was not sent",
        "bad_request_body": (
            "It named its site in a way sites read differently (a repeated or malformed "
            "Host header), so the proxy did not send it. The {policy} applies to every site."
        ),
        "invalid_title": "This link is not valid",
        "invalid_body": (
            "This acknowledgement link was made for someone else, or it was changed. "
            "Nothing was recorded. The notice explains the {policy}."
        ),
        "own_title": "Open this link from the notice",
        "own_body": (
            "The proxy answers this link only when you open it yourself from the notice, "
            "in a current browser. Nothing was recorded. The notice explains the {policy}."
        ),
        "auth_title": "Your computer could not show who you are",
        "auth_body": (
            "This proxy identifies staff by the sign-on of their work computer (Kerberos), "
            "without asking for a password. Your computer did not give it a valid ticket: "
            "sign in to the department's network, or contact your IT service desk. "
            "Use of the network is subject to the {policy}."
        ),
        "read": "Read the policy",
    },
    "fr": {
        "blocked_title": "Ce site est bloqu\u00e9",
        "blocked_body": "L'acc\u00e8s \u00e0 {site} est bloqu\u00e9 en vertu de la {policy}.",
        "refused_title": "Ce serveur mandataire n'est pas accessible depuis votre r\u00e9seau",
        "refused_body": (
            "L'adresse de votre ordinateur ne fait pas partie de celles que la {policy} "
            "autorise \u00e0 utiliser ce serveur mandataire. Communiquez avec le centre de "
            "services de TI si vous croyez qu'il s'agit d'une erreur."
        ),
        "destination_title": "Le serveur mandataire ne se connecte pas \u00e0 cette adresse",
        "destination_body": (
            "{site} est une adresse \u00e0 laquelle ce serveur mandataire ne se connecte "
            "jamais pour vous (son propre h\u00f4te, une adresse de bouclage ou locale au "
            "lien, ou une adresse que la {policy} exclut). Rien n'y a \u00e9t\u00e9 envoy\u00e9."
        ),
        "bad_request_title": "Cette requ\u00eate n'a pas \u00e9t\u00e9 envoy\u00e9e",
        "bad_request_body": (
            "Elle d\u00e9signait son site d'une fa\u00e7on que les sites lisent "
            "diff\u00e9remment (un en-t\u00eate Host r\u00e9p\u00e9t\u00e9 ou mal form\u00e9); "
            "le serveur mandataire ne l'a donc pas envoy\u00e9e. La {policy} s'applique "
            "\u00e0 tous les sites."
        ),
        "invalid_title": "Ce lien n'est pas valide",
        "invalid_body": (
            "Ce lien de confirmation a \u00e9t\u00e9 cr\u00e9\u00e9 pour une autre personne, "
            "ou il a \u00e9t\u00e9 modifi\u00e9. Rien n'a \u00e9t\u00e9 enregistr\u00e9. "
            "L'avis explique la {policy}."
        ),
        "own_title": "Ouvrez ce lien depuis l'avis",
        "own_body": (
            "Le serveur mandataire ne r\u00e9pond \u00e0 ce lien que si vous l'ouvrez "
            "vous-m\u00eame depuis l'avis, dans un navigateur \u00e0 jour. Rien n'a "
            "\u00e9t\u00e9 enregistr\u00e9. L'avis explique la {policy}."
        ),
        "auth_title": "Votre ordinateur n'a pas pu indiquer qui vous \u00eates",
        "auth_body": (
            "Ce serveur mandataire identifie le personnel par l'ouverture de session de son "
            "ordinateur de travail (Kerberos), sans demander de mot de passe. Votre "
            "ordinateur ne lui a pas remis de billet valide : ouvrez une session sur le "
            "r\u00e9seau du minist\u00e8re, ou communiquez avec le centre de services de TI. "
            "L'utilisation du r\u00e9seau est assujettie \u00e0 la {policy}."
        ),
        "read": "Lire la politique",
    },
}

_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;color:#1b1b1b;background:#fff;margin:0}"
    "main{max-width:44rem;margin:3rem auto;padding:0 1rem}"
    "section{border-left:6px solid #a51e22;padding:.25rem 1rem;margin:0 0 2rem}"
    "h1{font-size:1.5rem;margin:.5rem 0}a{color:#0b4f8a}"
)


def ascii_html(text: str) -> str:
    """Escape for HTML text or attributes, with every non-ASCII character as a reference."""
    return html.escape(text, quote=True).encode("ascii", "xmlcharrefreplace").decode("ascii")


def _sections(policy: Policy, kind: str, site: str) -> list[str]:
    langs = policy.notice.languages or ("en",)
    out = []
    for lang in langs:
        words = _WORDING.get(lang.split("-")[0], _WORDING["en"])
        text = policy.notice.texts.get(lang)
        policy_name = text.policy_name if text else policy.name
        policy_url = text.policy_url if text else policy.url
        body = ascii_html(words[f"{kind}_body"]).format(
            site=f"<strong>{ascii_html(site)}</strong>", policy=ascii_html(policy_name)
        )
        out.append(
            f'<section lang="{ascii_html(lang)}">'
            f"<h1>{ascii_html(words[f'{kind}_title'])}</h1><p>{body}</p>"
            f'<p><a href="{ascii_html(policy_url)}">{ascii_html(words["read"])}</a></p>'
            "</section>"
        )
    return out


def _page(policy: Policy, kind: str, site: str) -> bytes:
    langs = policy.notice.languages or ("en",)
    title = " / ".join(
        _WORDING.get(lang.split("-")[0], _WORDING["en"])[f"{kind}_title"] for lang in langs
    )
    page = (
        f'<!DOCTYPE html><html lang="{ascii_html(langs[0])}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{ascii_html(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{''.join(_sections(policy, kind, site))}</main></body></html>"
    )
    return page.encode("ascii")


def blocked_page(policy: Policy, site: str) -> bytes:
    return _page(policy, "blocked", site)


def refused_page(policy: Policy) -> bytes:
    return _page(policy, "refused", "")


def refused_destination_page(policy: Policy, destination: str) -> bytes:
    return _page(policy, "destination", destination)


def bad_request_page(policy: Policy) -> bytes:
    return _page(policy, "bad_request", "")


def invalid_link_page(policy: Policy) -> bytes:
    return _page(policy, "invalid", "")


def notice_link_page(policy: Policy) -> bytes:
    """The notice's own links, asked for other than by the person's navigation."""
    return _page(policy, "own", "")


def auth_required_page(policy: Policy) -> bytes:
    """The body of a 407 (shown by a browser that could not authenticate)."""
    return _page(policy, "auth", "")


PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}
