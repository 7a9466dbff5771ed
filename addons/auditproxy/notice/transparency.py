# Over 300 lines: the page's wording in English and French is most of it.
"""The page "What is recorded about me / Ce qui est enregistré à mon sujet". Pure.

The proxy serves it itself, on the monitored sites, to the person asking and about them
only: who they are in the access log (their name, or their pseudonym and its key id), what
the log records and what it never does, the site categories and what happens in each,
their notices and acknowledgements of the current period (from the notice state), how long
records are kept and whom to ask. Built from the policy in force and a `RecordView` of the
person; wording for English and French is built in, other languages read English.

The page is meant for a person's eyes only, never for a site's scripts: it is served only
to a top-level navigation (`notice.stage`), and its headers keep every other document out:
`Content-Security-Policy: sandbox` (an opaque origin, so even a same-origin opener or
frame cannot read it), `frame-ancestors 'none'`, `Cross-Origin-Opener-Policy: same-origin`,
`Cross-Origin-Resource-Policy: same-origin`, `Cache-Control: no-store`. No script, no form,
no external resource; pure ASCII with character references.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from auditproxy.policy.model import Action, GroupRule, NoticeSettings, Policy

# Shared with the confirmation page (`notice.confirmation`): one style, one hash.
STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;color:#1b1b1b;background:#fff;margin:0}"
    "main{max-width:48rem;margin:2rem auto;padding:0 1rem}"
    "section{border-top:4px solid #26374a;padding:.5rem 0;margin:0 0 2rem}"
    "h1{font-size:1.6rem;margin:.5rem 0 1.5rem}h2{font-size:1.3rem;margin:.5rem 0}"
    "h3{font-size:1.05rem;margin:1.25rem 0 .25rem}a{color:#0b4f8a}"
    "code{font-size:.95em;background:#eef1f4;padding:0 .25em;overflow-wrap:anywhere}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:start;vertical-align:top;"
    "padding:.25rem .5rem .25rem 0;border-bottom:1px solid #c9d1da}"
    "@media (prefers-color-scheme:dark){body{color:#f1f3f5;background:#1c2733}"
    "a{color:#9ccaff}code{background:#2b3a4a}section{border-color:#8fb4dc}}"
    ".ack{display:inline-block;padding:.5rem 1rem;margin:0 1rem .5rem 0;font:inherit;"
    "font-weight:600;color:#fff;background:#26374a;border:2px solid #26374a;"
    "border-radius:4px;text-decoration:none;cursor:pointer}"
    ".ack:focus{outline:3px solid #0535d2;outline-offset:2px}"
    ".ack[aria-disabled=true]{opacity:.55;cursor:default}"
    ".code{font-size:1.3em;letter-spacing:.12em;user-select:none;-webkit-user-select:none}"
    ".code::before{content:attr(data-n)}"
    ".again{font-weight:600}"
    ".code-field input{font:inherit;width:4em;padding:.25rem;margin-left:.5rem}"
    "@media (prefers-color-scheme:dark){.ack{color:#1c2733;background:#9ccaff;"
    "border-color:#9ccaff}.ack:focus{outline-color:#fff}}"
    + "".join(f".g{n}{{height:{3 * n}rem}}" for n in range(1, 8))  # confirmation's places
)
STYLE_HASH = "'sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode() + "'"

HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src {STYLE_HASH}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'; sandbox allow-top-navigation-to-custom-protocols"
    ),
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One notice scope the person had something on record for, this period."""

    scope: str  # "site:facebook", "category:social", "all"
    shown: bool  # the period's notice is claimed (shown on a certain page, or acknowledged)
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class RecordView:
    """What the page says about the person asking."""

    user: Mapping[str, str]  # the access log's user fields (`Decision.user`)
    source: str  # how the person was identified: proxy_auth, header, address
    period: date  # the notice period's first day
    entries: tuple[Entry, ...]


_WORDING: dict[str, dict[str, str]] = {
    "en": {
        "title": "What is recorded about me",
        "intro": (
            "The department's web proxy made this page for you, from your own request. The "
            "site you were on does not see it. It follows the {policy}."
        ),
        "who": "Who you are in the records",
        "name": "Records carry your user name: {value}.",
        "pseudonym": (
            "Records carry a pseudonym instead of your name: {value} (key {key}). Only "
            "someone who holds the department's key can match it to you, for an "
            "investigation under the policy."
        ),
        "source_proxy_auth": "The proxy knows you by the user name you gave it.",
        "source_header": "The proxy knows you by your single sign-on.",
        "source_address": "The proxy knows you by your computer's network address.",
        "recorded": "What is recorded for each request",
        "r_time": "the date and time, and how long the request took",
        "r_user": "who made it (as above)",
        "r_site": "the site's name and port (for example www.facebook.com, 443)",
        "r_rule": "the category, site and action the policy gave it, and the policy's version",
        "r_result": "the method (GET, POST...), the result code and the size of the answer",
        "r_server": "the address the proxy connected to",
        "r_notice": "that the reminder was shown, and that you said \u201cI understand\u201d",
        "r_path": "the page's path, without the part after ?",
        "r_source": "your computer's network address",
        "never": "What is never recorded",
        "n_query": "the part of a web address after ? (searches, parameters)",
        "n_content": "the pages you read, what you type or post, files you send or receive",
        "n_secrets": "cookies, passwords and authorization headers",
        "n_path": "the page's path: only the site's name",
        "n_source": "your computer's network address",
        "categories": "Site categories and what happens in each",
        "col_category": "Category",
        "col_action": "What happens",
        "monitor": "Allowed and recorded; the reminder is shown once {every}.",
        "log": "Allowed and recorded.",
        "bypass": "Allowed and not decrypted: only the site's name and port are recorded.",
        "block": "Blocked; the attempt is recorded.",
        "other": "Every other site",
        "notices": "Your reminders since {start}",
        "none": "No reminder is on record for you since {start}.",
        "shown": "shown",
        "acknowledged": "you said \u201cI understand\u201d",
        "all": "all monitored sites",
        "every_day": "a day",
        "every_week": "a week (Monday to Sunday)",
        "every_month": "a month",
        "retention": "How long records are kept",
        "kept": "The department keeps these records for {days} days.",
        "unstated": "The policy does not say; ask the contact below.",
        "contact": "Questions",
        "ask": "Ask {name}:",
        "no_contact": "See the {policy}.",
    },
    "fr": {
        "title": "Ce qui est enregistr\u00e9 \u00e0 mon sujet",
        "intro": (
            "Le serveur mandataire Web du minist\u00e8re a produit cette page pour vous, \u00e0 "
            "partir de votre propre requ\u00eate. Le site que vous consultiez ne la voit pas. "
            "Elle suit la {policy}."
        ),
        "who": "Qui vous \u00eates dans les enregistrements",
        "name": "Les enregistrements portent votre nom d'utilisateur\u00a0: {value}.",
        "pseudonym": (
            "Les enregistrements portent un pseudonyme au lieu de votre nom\u00a0: {value} "
            "(cl\u00e9 {key}). Seule une personne qui d\u00e9tient la cl\u00e9 du minist\u00e8re "
            "peut le relier \u00e0 vous, pour une enqu\u00eate pr\u00e9vue par la politique."
        ),
        "source_proxy_auth": (
            "Le serveur mandataire vous reconna\u00eet par le nom d'utilisateur que vous lui "
            "avez donn\u00e9."
        ),
        "source_header": (
            "Le serveur mandataire vous reconna\u00eet par votre authentification unique."
        ),
        "source_address": (
            "Le serveur mandataire vous reconna\u00eet par l'adresse r\u00e9seau de votre "
            "ordinateur."
        ),
        "recorded": "Ce qui est enregistr\u00e9 pour chaque requ\u00eate",
        "r_time": "la date et l'heure, et la dur\u00e9e de la requ\u00eate",
        "r_user": "qui l'a faite (comme ci-dessus)",
        "r_site": "le nom et le port du site (par exemple www.facebook.com, 443)",
        "r_rule": (
            "la cat\u00e9gorie, le site et l'action que la politique lui attribue, et la "
            "version de la politique"
        ),
        "r_result": (
            "la m\u00e9thode (GET, POST...), le code de r\u00e9sultat et la taille de la "
            "r\u00e9ponse"
        ),
        "r_server": "l'adresse \u00e0 laquelle le serveur mandataire s'est connect\u00e9",
        "r_notice": (
            "que le rappel a \u00e9t\u00e9 affich\u00e9, et que vous avez r\u00e9pondu "
            "\u00ab\u00a0Je comprends\u00a0\u00bb"
        ),
        "r_path": "le chemin de la page, sans la partie qui suit ?",
        "r_source": "l'adresse r\u00e9seau de votre ordinateur",
        "never": "Ce qui n'est jamais enregistr\u00e9",
        "n_query": "la partie d'une adresse Web qui suit ? (recherches, param\u00e8tres)",
        "n_content": (
            "les pages que vous lisez, ce que vous tapez ou publiez, les fichiers envoy\u00e9s "
            "ou re\u00e7us"
        ),
        "n_secrets": (
            "les t\u00e9moins (cookies), les mots de passe et les en-t\u00eates d'autorisation"
        ),
        "n_path": "le chemin de la page\u00a0: seulement le nom du site",
        "n_source": "l'adresse r\u00e9seau de votre ordinateur",
        "categories": "Cat\u00e9gories de sites et ce qui se passe dans chacune",
        "col_category": "Cat\u00e9gorie",
        "col_action": "Ce qui se passe",
        "monitor": "Permis et enregistr\u00e9; le rappel est affich\u00e9 une fois {every}.",
        "log": "Permis et enregistr\u00e9.",
        "bypass": (
            "Permis et non d\u00e9chiffr\u00e9\u00a0: seuls le nom et le port du site sont "
            "enregistr\u00e9s."
        ),
        "block": "Bloqu\u00e9; la tentative est enregistr\u00e9e.",
        "other": "Tous les autres sites",
        "notices": "Vos rappels depuis le {start}",
        "none": "Aucun rappel n'est enregistr\u00e9 pour vous depuis le {start}.",
        "shown": "affich\u00e9",
        "acknowledged": "vous avez r\u00e9pondu \u00ab\u00a0Je comprends\u00a0\u00bb",
        "all": "tous les sites surveill\u00e9s",
        "every_day": "par jour",
        "every_week": "par semaine (du lundi au dimanche)",
        "every_month": "par mois",
        "retention": "Dur\u00e9e de conservation",
        "kept": "Le minist\u00e8re conserve ces enregistrements pendant {days}\u00a0jours.",
        "unstated": (
            "La politique ne le pr\u00e9cise pas; adressez-vous \u00e0 la personne-ressource "
            "ci-dessous."
        ),
        "contact": "Questions",
        "ask": "Adressez-vous \u00e0\u00a0: {name}",
        "no_contact": "Consultez la {policy}.",
    },
}


def _e(text: str) -> str:
    """Escape for HTML text or attributes; every non-ASCII character as a reference."""
    return html.escape(text, quote=True).encode("ascii", "xmlcharrefreplace").decode("ascii")


def render(policy: Policy, view: RecordView, group: GroupRule | None = None) -> bytes:
    """The page, in the person's notice languages that have wording (English otherwise).
    `group`: the policy group that decides for this person (its notice wording and its
    actions per category), None for the policy's own."""
    notice = group.notice if group is not None and group.notice else policy.notice
    langs = [lang for lang in notice.languages if lang.split("-")[0] in _WORDING]
    langs = langs or ["en"]
    title = " / ".join(_WORDING[lang.split("-")[0]]["title"] for lang in langs)
    sections = "".join(_section(policy, notice, group, view, lang) for lang in langs)
    page = (
        f'<!DOCTYPE html><html lang="{_e(langs[0])}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>"
        f"<body><main><h1>{_e(title)}</h1>{sections}</main></body></html>"
    )
    return page.encode("ascii")


def _section(
    policy: Policy, notice: NoticeSettings, group: GroupRule | None, view: RecordView, lang: str
) -> str:
    w = _WORDING[lang.split("-")[0]]
    text = notice.texts.get(lang)
    policy_link = _link(
        text.policy_url if text else policy.url, text.policy_name if text else policy.name
    )
    parts = [
        f"<h2>{_e(w['title'])}</h2>",
        f"<p>{_e(w['intro']).format(policy=policy_link)}</p>",
        f"<h3>{_e(w['who'])}</h3>",
        f"<p>{_who(view, w)}</p>",
        f"<p>{_e(w.get('source_' + view.source, ''))}</p>",
        f"<h3>{_e(w['recorded'])}</h3>",
        _list(w, _recorded(policy)),
        f"<h3>{_e(w['never'])}</h3>",
        _list(w, _never(policy)),
        f"<h3>{_e(w['categories'])}</h3>",
        _categories(policy, group, w),
        _notices(policy, view, w, lang),
        f"<h3>{_e(w['retention'])}</h3>",
        f"<p>{_retention(policy, w)}</p>",
        f"<h3>{_e(w['contact'])}</h3>",
        f"<p>{_contact(policy, w, policy_link)}</p>",
    ]
    return f'<section lang="{_e(lang)}">{"".join(parts)}</section>'


def _link(url: str, label: str) -> str:
    return f'<a href="{_e(url)}" rel="noreferrer">{_e(label)}</a>'


def _who(view: RecordView, w: Mapping[str, str]) -> str:
    """The person as their access records name them (the policy's or their group's
    `log_as` already decided which field that is)."""
    if "user.hash" not in view.user:
        value = f"<code>{_e(view.user.get('user.name', ''))}</code>"
        return _e(w["name"]).format(value=value)
    value = f"<code>{_e(view.user['user.hash'])}</code>"
    key = f"<code>{_e(view.user.get('labels.user_key_id', ''))}</code>"
    return _e(w["pseudonym"]).format(value=value, key=key)


def _recorded(policy: Policy) -> list[str]:
    keys = ["r_time", "r_user", "r_site", "r_rule", "r_result", "r_server", "r_notice"]
    if policy.logging.url_path:
        keys.append("r_path")
    if policy.logging.source_ip:
        keys.append("r_source")
    return keys


def _never(policy: Policy) -> list[str]:
    keys = ["n_query", "n_content", "n_secrets"]
    if not policy.logging.url_path:
        keys.append("n_path")
    if not policy.logging.source_ip:
        keys.append("n_source")
    return keys


def _list(w: Mapping[str, str], keys: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(w[key])}</li>" for key in keys) + "</ul>"


def _every(policy: Policy, w: Mapping[str, str]) -> str:
    return w[f"every_{policy.notice.interval.value}"]


def _action(action: Action, policy: Policy, w: Mapping[str, str]) -> str:
    return _e(w[action.value].format(every=_every(policy, w)))


def _categories(policy: Policy, group: GroupRule | None, w: Mapping[str, str]) -> str:
    """Each category's action for this person (their group's, where it changes it)."""
    rows = []
    overrides = group.categories if group is not None else {}
    for category in policy.categories:
        action = overrides.get(category.name, category.action)
        notice = category.notice if category.action is Action.MONITOR else True
        if group is not None and group.notice_enabled is not None:
            notice = group.notice_enabled
        if action is Action.MONITOR and not notice:
            action = Action.LOG  # monitored without the notice: allowed and recorded
        described = f"<br>{_e(category.description)}" if category.description else ""
        rows.append(
            f"<tr><td>{_e(category.name)}</td><td>{_action(action, policy, w)}{described}</td></tr>"
        )
    rows.append(
        f"<tr><td>{_e(w['other'])}</td>"
        f"<td>{_action(overrides.get('other', policy.default_action), policy, w)}</td></tr>"
    )
    head = f"<tr><th>{_e(w['col_category'])}</th><th>{_e(w['col_action'])}</th></tr>"
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _notices(policy: Policy, view: RecordView, w: Mapping[str, str], lang: str) -> str:
    start = _e(_date(view.period, lang))
    heading = f"<h3>{_e(w['notices']).format(start=start)}</h3>"
    entries = [e for e in view.entries if e.shown or e.acknowledged]
    if not entries:
        return heading + f"<p>{_e(w['none']).format(start=start)}</p>"
    items = []
    for entry in entries:
        what = [w["shown"]] if entry.shown else []
        if entry.acknowledged:
            what.append(w["acknowledged"])
        items.append(f"<li>{_e(_scope_name(entry.scope, w))}: {_e(', '.join(what))}</li>")
    return heading + "<ul>" + "".join(items) + "</ul>"


def _scope_name(scope: str, w: Mapping[str, str]) -> str:
    return w["all"] if scope == "all" else scope.partition(":")[2]


def _date(day: date, lang: str) -> str:
    """ISO 8601, the Government of Canada's numeric date, reads the same in both languages."""
    return day.isoformat()


def _retention(policy: Policy, w: Mapping[str, str]) -> str:
    days = policy.logging.retention_days
    return _e(w["unstated"]) if days is None else _e(w["kept"].format(days=days))


def _contact(policy: Policy, w: Mapping[str, str], policy_link: str) -> str:
    contact = policy.contact
    if contact is None:
        return _e(w["no_contact"]).format(policy=policy_link)
    ways = []
    if contact.email:
        ways.append(f'<a href="mailto:{_e(contact.email)}">{_e(contact.email)}</a>')
    if contact.url:
        ways.append(_link(contact.url, contact.url))
    return f"{_e(w['ask'].format(name=contact.name))} {' '.join(ways)}"
