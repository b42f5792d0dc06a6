"""A real SMTP server for the tests (aiosmtpd): every accepted message is
written to OUTDIR as NNNNNN.eml, with its arrival time in NNNNNN.time.

Faults on demand, for the retry paths:
  --reject-5xx SUBSTR   answer 550 to RCPT TO addresses containing SUBSTR
  --defer-4xx N         answer 451 to the first N DATA commands
Prints "listening PORT" on stdout once it accepts connections.
"""
import argparse
import asyncio
import itertools
import os
import sys
import time

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, outdir, reject, defer):
        self.outdir = outdir
        self.reject = reject
        self.defer = defer
        self.seq = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject and self.reject in address:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.defer > 0:
            self.defer -= 1
            return "451 4.3.0 try again later"
        n = next(self.seq)
        base = os.path.join(self.outdir, f"{n:06d}")
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(base + ".time", "w") as f:
            f.write(f"{time.time():.6f}\n{','.join(envelope.rcpt_tos)}\n")
        os.rename(base + ".tmp", base + ".eml")
        return "250 Message accepted"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--outdir", required=True)
    p.add_argument("--reject-5xx", default="")
    p.add_argument("--defer-4xx", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    handler = Handler(a.outdir, a.reject_5xx, a.defer_4xx)
    for _ in range(20):
        port = a.port
        if port == 0:
            import socket
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
        c = Controller(handler, hostname="127.0.0.1", port=port, data_size_limit=10 * 1024 * 1024)
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
