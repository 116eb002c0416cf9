"""What one request allows: the reader's privacy signals turned into a small ``Consent``.

Serving, the event log and recommendations consult the ``Consent`` instead of reading signals
themselves, so one place decides what "no consent" means:

- ``reader``: the page may keep a reader id at all (TCF purpose 1, storage). Without it the
  request is served as anonymous. Storage alone puts the id nowhere: tokens and the event log
  carry it only for the uses below, each of which needs its own purposes too.
- ``ads``: ads may use the reader (purposes 1, 3 and 4): frequency caps and per-reader variants.
  Without it ads are contextual only, and a capped campaign is not served (a cap that cannot be
  kept is not kept by guessing) unless it says ``frequency_cap.without_consent: serve``.
- ``content``: recommendations may use the reader (purposes 1, 5 and 6); without it widgets come
  from the non-personal strategies (``related``, ``popular``).

Global Privacy Control (``Sec-GPC: 1`` or ``privacy.gpc``) allows none of them, whatever the TC
string says. A request with no signal at all is served as before adserve knew about consent,
unless the site sets ``site.consent_required``; a TC string that does not decode allows nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tcf import TCStringError, purpose_consents

STORAGE = frozenset({1})
PERSONAL_ADS = frozenset({1, 3, 4})
PERSONAL_CONTENT = frozenset({1, 5, 6})


@dataclass(frozen=True, slots=True)
class Signals:
    """What the request said: the ``privacy`` object of the body and the ``Sec-GPC`` header."""
    gdpr_applies: bool | None = None
    tc_string: str | None = None
    gpc: bool = False

    @property
    def tcf(self) -> bool:
        """Whether the page passed on a TCF answer (a CMP was there)."""
        return self.gdpr_applies is not None or self.tc_string is not None


@dataclass(frozen=True, slots=True)
class Consent:
    reader: bool
    ads: bool
    content: bool
    signalled: bool  # False: the request carried no signal and was served as before

    @property
    def label(self) -> str | None:
        """The event log's ``consent`` field: None without a signal, else the uses allowed."""
        if not self.signalled:
            return None
        uses = [name for name in ("reader", "ads", "content") if getattr(self, name)]
        return "+".join(uses) or "none"

    def ads_reader(self, user: str | None) -> str | None:
        """The reader id as ads may use it (caps, variants, ad tokens and their events)."""
        return user if self.ads else None

    def content_reader(self, user: str | None) -> str | None:
        """The reader id as recommendations may use it (widgets, reads and clicks that train)."""
        return user if self.content else None

    def strategy(self, wanted: str) -> str:
        """The recommendation strategy to start from: ``personal`` needs content consent."""
        return "related" if wanted == "personal" and not self.content else wanted


UNSIGNALLED = Consent(reader=True, ads=True, content=True, signalled=False)
NOTHING = Consent(reader=False, ads=False, content=False, signalled=True)
EVERYTHING = Consent(reader=True, ads=True, content=True, signalled=True)


def consent(signals: Signals, consent_required: bool) -> Consent:
    if signals.gpc:
        return NOTHING
    if not signals.tcf:
        return NOTHING if consent_required else UNSIGNALLED
    if signals.gdpr_applies is False:
        return EVERYTHING  # the CMP says GDPR does not apply to this reader: no consent needed
    try:
        purposes = purpose_consents(signals.tc_string) if signals.tc_string else frozenset()
    except TCStringError:
        purposes = frozenset()
    return Consent(reader=STORAGE <= purposes, ads=PERSONAL_ADS <= purposes,
                   content=PERSONAL_CONTENT <= purposes, signalled=True)
