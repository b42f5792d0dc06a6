"""Verify a message's DKIM signature with dkimpy, an independent verifier,
against a public key given as its DNS TXT value (no DNS is asked).

usage: dkim_verify.py MESSAGE.eml TXT-FILE
Prints "pass" and exits 0, or prints "fail: why" and exits 1.
"""
import sys

import dkim


def main():
    msg = open(sys.argv[1], "rb").read()
    txt = open(sys.argv[2], "rb").read().strip()

    def dnsfunc(name, timeout=5):
        return txt

    try:
        ok = dkim.verify(msg, dnsfunc=dnsfunc)
    except Exception as e:  # a malformed signature is a failure too
        print(f"fail: {e}")
        return 1
    print("pass" if ok else "fail: signature does not verify")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
