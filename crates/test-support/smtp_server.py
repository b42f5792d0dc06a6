"""A real SMTP server for the tests (aiosmtpd): every accepted message is
written to OUTDIR as NNNNNN.eml, with its arrival time, recipients and
envelope sender (MAIL FROM) in NNNNNN.time.

Faults on demand, for the retry paths:
  --reject-5xx SUBSTR   answer 550 to RCPT TO addresses containing SUBSTR
  --defer-4xx N         answer 451 to the first N DATA commands
  --mode-file PATH      read on every connection and DATA, so a test can
                        change it at run time: "ok" (or no file) works,
                        "421" answers 421 at the greeting and closes the
                        connection, "451" answers 451 to every DATA; each
                        fault answered is appended to OUTDIR/faults.log
For "refusing connections", stop the process and start it again later
with --port set to the same port.
Prints "listening PORT" on stdout once it accepts connections.
"""
import argparse
import asyncio
import itertools
import os
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, outdir, reject, defer, mode_file=None):
        self.outdir = outdir
        self.reject = reject
        self.defer = defer
        self.mode_file = mode_file
        # Continue numbering after messages already there (a restart on
        # the same port and outdir must not overwrite them).
        done = [int(f[:6]) for f in os.listdir(outdir) if f.endswith(".eml")]
        self.seq = itertools.count(max(done, default=0) + 1)

    def mode(self):
        if not self.mode_file:
            return "ok"
        try:
            with open(self.mode_file) as f:
                return f.read().strip() or "ok"
        except FileNotFoundError:
            return "ok"

    def note_fault(self, what):
        with open(os.path.join(self.outdir, "faults.log"), "a") as f:
            f.write(f"{time.time():.3f} {what}\n")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject and self.reject in address:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.mode() == "451":
            self.note_fault("451")
            return "451 4.3.0 mail system busy, try again later"
        if self.defer > 0:
            self.defer -= 1
            return "451 4.3.0 try again later"
        n = next(self.seq)
        base = os.path.join(self.outdir, f"{n:06d}")
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(base + ".time", "w") as f:
            f.write(f"{time.time():.6f}\n{','.join(envelope.rcpt_tos)}\n{envelope.mail_from}\n")
        os.rename(base + ".tmp", base + ".eml")
        return "250 Message accepted"


class FaultySMTP(SMTP):
    """Answers 421 at the greeting while the mode file says so."""

    async def _handle_client(self):
        if self.event_handler.mode() == "421":
            self.event_handler.note_fault("421")
            await self.push("421 4.3.2 service not available, closing connection")
            self.transport.close()
            return
        await super()._handle_client()


class FaultyController(Controller):
    def factory(self):
        return FaultySMTP(self.handler, **self.SMTP_kwargs)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--outdir", required=True)
    p.add_argument("--reject-5xx", default="")
    p.add_argument("--defer-4xx", type=int, default=0)
    p.add_argument("--mode-file", default=None)
    a = p.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    handler = Handler(a.outdir, a.reject_5xx, a.defer_4xx, a.mode_file)
    for _ in range(20):
        port = a.port
        if port == 0:
            import socket
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
        c = FaultyController(handler, hostname="127.0.0.1", port=port, data_size_limit=10 * 1024 * 1024)
        try:
            c.start()
            break
        except Exception:
            if a.port:
                raise
    print(f"listening {port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        c.stop()


if __name__ == "__main__":
    sys.exit(main())
