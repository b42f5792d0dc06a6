#!/usr/bin/env python3
"""The layout rules of docs/architecture.md, checked on every CI run:

1. no import cycle between the modules of a crate (a file is a module; a
   parent's `mod` lines and `pub use` re-exports of its children are a facade,
   not a dependency);
2. no production function over 80 lines unless the comment above it gives
   the reason, starting "Long:";
3. no `Result<_, String>` in the library crates (errors are types);
4. `anyhow` only in the CLI (the root package's src/).

Usage: python3 .ci/layout_check.py   (from anywhere; exits 1 and lists what breaks a rule)
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIBRARIES = ["crates/connector/src", "crates/sandbox/src", "crates/qr/src"]
ALL = LIBRARIES + ["src"]
MAX_LINES = 80


def production(text):
    """The text before a file's `#[cfg(test)] mod tests`."""
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
    return text[: cut.start()] if cut else text


def modules(src):
    mods = {}
    for p in src.rglob("*.rs"):
        parts = list(p.relative_to(src).with_suffix("").parts)
        if parts[-1] in ("mod", "lib", "main"):
            parts = parts[:-1]
        mods[tuple(parts)] = p
    return mods


def edges_of(mods):
    def resolve(path):
        for i in range(len(path), -1, -1):
            if tuple(path[:i]) in mods:
                return tuple(path[:i])
        return ()

    edges = {m: set() for m in mods}
    for m, p in mods.items():
        text = re.sub(r"//.*", "", production(p.read_text()))
        # Declarations and re-exports: a facade, not a dependency.
        text = re.sub(r"(?m)^\s*pub(\([^)]*\))?\s+(mod\s+\w+;|use\s+[^;]*;)", "", text)
        text = re.sub(r"(?m)^\s*mod\s+\w+;", "", text)
        for mm in re.finditer(r"(?<![:\w])(\w+)::", text):
            t = m + (mm.group(1),)
            if t in mods:
                edges[m].add(t)
        for mm in re.finditer(r"\b(crate|super(?:::super)*)((?:::\w+)+)(::\{([^}]*)\})?", text):
            start = [] if mm.group(1) == "crate" else list(m)[: len(m) - mm.group(1).count("super")]
            segs = [s for s in mm.group(2).split("::") if s]
            cands = [start + segs]
            if mm.group(4):
                for item in mm.group(4).split(","):
                    item = item.strip().split(" as ")[0]
                    if item and item != "self":
                        cands.append(start + segs + item.split("::"))
            for c in cands:
                t = resolve(c)
                if t != m and t[: len(m)] != m:
                    edges[m].add(t)
    return edges


def cycles(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)")


def long_functions(path):
    lines = production(path.read_text()).split("\n")
    i, found = 0, []
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            s = re.sub(r'"([^"\\]|\\.)*"', '""', lines[j])
            s = re.sub(r"'([^'\\]|\\.)'", "''", s).split("//")[0]
            for ch in s:
                if ch == "{":
                    depth, started = depth + 1, True
                elif ch == "}":
                    depth -= 1
            if started and depth == 0:
                break
            if not started and s.rstrip().endswith(";"):
                break
            j += 1
        n = j - i + 1
        if started and n > MAX_LINES:
            k = i - 1
            while k >= 0 and lines[k].strip().startswith(("#[", "//")):
                k -= 1
            comment = "\n".join(lines[k + 1 : i])
            if "Long:" not in comment:
                found.append((i + 1, m.group(6), n))
        i = j + 1 if started else i + 1
    return found


def main():
    problems = []
    for crate in ALL:
        src = ROOT / crate
        mods = modules(src)
        edges = edges_of(mods)
        name = lambda t: "::".join(t) or "(root)"
        for comp in cycles(edges):
            problems.append(f"{crate}: import cycle: " + ", ".join(sorted(name(x) for x in comp)))
        for p in sorted(src.rglob("*.rs")):
            rel = p.relative_to(ROOT)
            for line, fn, n in long_functions(p):
                problems.append(f"{rel}:{line}: fn {fn} has {n} lines (> {MAX_LINES}) and no 'Long:' reason")
            if crate in LIBRARIES:
                text = production(p.read_text())
                for no, l in enumerate(text.split("\n"), 1):
                    if re.search(r"Result<[^;{]*,\s*String>", l) and not l.strip().startswith("//"):
                        problems.append(f"{rel}:{no}: Result<_, String> in a library")
                    if re.search(r"\banyhow\b", l) and not l.strip().startswith("//"):
                        problems.append(f"{rel}:{no}: anyhow in a library")
    for crate in ("crates/connector", "crates/sandbox", "crates/qr"):
        if re.search(r"(?m)^anyhow", (ROOT / crate / "Cargo.toml").read_text()):
            problems.append(f"{crate}/Cargo.toml: depends on anyhow")
    for p in problems:
        print(p)
    print(f"layout check: {len(problems)} problem(s) in {', '.join(ALL)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
