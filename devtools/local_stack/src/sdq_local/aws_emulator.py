"""The local stack's AWS emulator: the moto server, prepared as every moto server sdq runs, its
access log scrubbed.

moto's server is threaded but its DynamoDB backend is not thread-safe (a refused transaction puts
back a copy of the table taken before it, undoing other requests' writes): DynamoDB requests are
served one at a time, as real DynamoDB isolates them, and moto's pathological per-request costs
are cut (``sdq_moto.prepare_moto_server``, see ``libs/moto/README.md``).

moto's HTTP server (werkzeug) logs every request line, query string included; a download link
fetched from the local stack would leave its signature and credential in
``.local/logs/aws-emulator.log``. Every access line goes through the same scrubber as sdq's own
logs first. Run as ``python -m sdq_local.aws_emulator <moto.server arguments>``.
"""

from __future__ import annotations

import logging
import sys

from sdq_moto import prepare_moto_server
from sdq_observability.logs import Scrubber

_SCRUB = Scrubber()


class ScrubSignedQueries(logging.Filter):
    """Replace a record's message by its scrubbed rendering (SigV4 credential parameters and
    signed query strings removed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _SCRUB.clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def main(argv: list[str] | None = None) -> None:
    logging.getLogger("werkzeug").addFilter(ScrubSignedQueries())
    from moto.server import main as moto_main  # noqa: PLC0415 - after the filter is in place

    prepare_moto_server()
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
