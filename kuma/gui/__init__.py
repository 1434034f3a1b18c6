"""The operators' web GUI, served by kuma-cp under ``/gui`` on the API port.

Static pages (``static/``: plain HTML, CSS and JavaScript, no build step) read paged JSON from
``/gui/api/...`` and follow ``/gui/events``, a server-sent-events stream of change notices fed
by the store's watch, the store's problem notices, the ADS streams and the engine's
propagation measurements. Read-only; the API's access rules apply to every route.
"""

from __future__ import annotations

from .component import Gui
from .feed import LiveFeed

__all__ = ["Gui", "LiveFeed"]
