"""One-line notices: things a user should know that are not errors ("the index did not match its catalog;
rebuilt from the catalog").

Library code calls :func:`notice`; it never prints. The notices go to the ``glimpse`` logger at WARNING
level, so a Python caller sees them through ``logging`` as usual; the CLI shows them on stderr as
``notice: …`` and the server logs them.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("glimpse")


def notice(message: str) -> None:
    """Tell the user ``message`` (one line: what happened, and what was done about it)."""
    logger.warning(message)
