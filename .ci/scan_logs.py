#!/usr/bin/env python3
"""Scan every daemon log the tests kept (MYDEX_TEST_LOG_DIR) for a secret:
the configured secrets of crates/test-support (and the store key's hex form) and
every member key the sandbox handed out (the *.secrets files). The matching
is `grep -F` (Aho-Corasick: hundreds of MB against a thousand keys in
seconds). A second pass (`grep -E`) looks for a URL query carrying a key
(`?key=`, `&key=`) or any PDS call URL with its query (`/api/pds/...?`):
the member key travels in the PDS calls' query (issue 13). Prints what
was scanned; exits 1 on any hit."""
import pathlib
import subprocess
import sys
import tempfile

d = pathlib.Path(sys.argv[1])
secrets = {
    "test-connection-token-0123456789": "connection token",
    "sandbox-secret": "client secret",
    "test-admin-token-abcdef0123456789": "admin token",
    "*" * 32: "store key (raw bytes)",
    "2a" * 32: "store key (hex)",
}
# The test DKIM keys (tests/fixtures/dkim): every line of their bodies.
for pem in sorted((pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/dkim").glob("*.pem")):
    for line in pem.read_text().splitlines():
        if line and not line.startswith("-----"):
            secrets[line] = f"DKIM key ({pem.name})"
member_keys = 0
for f in sorted(d.glob("*.secrets")):
    for line in f.read_text().split():
        if line.strip() and line.strip() not in secrets:
            secrets[line.strip()] = f"member key ({f.stem})"
            member_keys += 1
logs = sorted(d.glob("*.log"))
if not logs:
    print("log scan: no logs were kept; is MYDEX_TEST_LOG_DIR passed to the tests?")
    sys.exit(1)
lines = 0
for log in logs:
    with open(log, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            lines += block.count(b"\n")
with tempfile.NamedTemporaryFile("w", suffix=".patterns") as pat:
    pat.write("\n".join(secrets) + "\n")
    pat.flush()
    found = subprocess.run(
        ["grep", "-F", "-o", "-H", "-n", "-f", pat.name, *map(str, logs)],
        capture_output=True,
        text=True,
        errors="replace",
    )
if found.returncode not in (0, 1):
    print(f"log scan: grep failed: {found.stderr}")
    sys.exit(1)
hits = [h for h in found.stdout.splitlines() if h]
configured = len(secrets) - member_keys
queries = subprocess.run(
    ["grep", "-E", "-o", "-H", "-n", r"[?&]key=|/api/pds/[^ ]*\?", *map(str, logs)],
    capture_output=True,
    text=True,
    errors="replace",
)
if queries.returncode not in (0, 1):
    print(f"log scan: grep failed: {queries.stderr}")
    sys.exit(1)
query_hits = [h for h in queries.stdout.splitlines() if h]
for h in query_hits:
    secrets.setdefault(h.rpartition(":")[2], "a URL query with a member key")
hits += query_hits
print(
    f"log scan: {lines} lines in {len(logs)} daemon logs, "
    f"{configured} configured secrets and {member_keys} member keys: {len(hits)} hits"
)
for h in hits[:50]:
    path_line, _, value = h.rpartition(":")
    print(f"  {path_line}: {secrets.get(value, 'secret')}")
sys.exit(1 if hits else 0)
