"""Targeting: the rule language (``rules.py``) and the index that answers it per context (``index.py``)."""

from .index import Entry, TargetingIndex
from .rules import CompiledTargeting, Context, platform_fits

__all__ = ["CompiledTargeting", "Context", "Entry", "TargetingIndex", "platform_fits"]
