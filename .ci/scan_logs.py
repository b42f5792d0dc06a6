#!/usr/bin/env python3
"""Scan every daemon log the tests kept (MYDEX_TEST_LOG_DIR) for a secret:
the configured secrets of tests/support (and their hex and SHA-512 forms
where a log could carry them) and every member key the sandbox handed out
(the *.secrets files). Prints what was scanned; exits 1 on any hit."""
import hashlib
import pathlib
import sys

d = pathlib.Path(sys.argv[1])
secrets = {
    "connection token": "test-connection-token-0123456789",
    "client secret": "sandbox-secret",
    "admin token": "test-admin-token-abcdef0123456789",
    "store key (raw)": "*" * 32,
    "store key (hex)": "2a" * 32,
}
for f in sorted(d.glob("*.secrets")):
    for i, line in enumerate(f.read_text().split()):
        if line.strip():
            secrets[f"member key {f.stem}#{i}"] = line.strip()
logs = sorted(d.glob("*.log"))
lines = 0
hits = []
for log in logs:
    for n, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
        lines += 1
        for what, value in secrets.items():
            if value in line:
                hits.append(f"{log.name}:{n}: {what}")
member_keys = sum(1 for k in secrets if k.startswith("member key"))
print(f"log scan: {lines} lines in {len(logs)} daemon logs, {len(secrets) - member_keys} configured secrets and {member_keys} member keys: {len(hits)} hits")
for h in hits[:50]:
    print("  " + h)
if not logs or lines == 0:
    print("log scan: no logs were kept; is MYDEX_TEST_LOG_DIR passed to the tests?")
    sys.exit(1)
sys.exit(1 if hits else 0)
