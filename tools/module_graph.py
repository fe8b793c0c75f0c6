#!/usr/bin/env python3
"""The crate's module import graph: fails on a cycle, or on a lower layer naming the loader.

One node per source file (`src/store/csr.rs` is `store::csr`). An edge A -> B for every path
`crate::B::...` / `super::...` that A names (in `use` lines and inline), resolved to the
deepest module that exists. A parent naming its own submodules (`mod x; pub use x::Y;`) is
structure, not a dependency, and is not an edge; everything else is.

    python3 tools/module_graph.py [--dot]     # prints the graph (or Graphviz) and checks it
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
# Modules that sit below the loader: they must not name it (nor its batch types through it).
LOWER = ("store", "collection", "sampler", "assemble", "pipeline", "tensor", "cuda", "batch",
         "error", "convert")


def module_of(path: Path) -> tuple:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts
    if parts[0] == "bin":
        return None
    if parts == ("lib",):
        return ()
    return parts[:-1] + ((parts[-1],) if parts[-1] != "mod" else ())


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def expand(prefix: str, rest: str) -> list:
    """Paths named by `prefix::rest`, where rest may start with a `{...}` group."""
    rest = rest.strip()
    if not rest.startswith("{"):
        m = re.match(r"[\w:]*", rest)
        return [prefix + "::" + m.group(0).rstrip(":")]
    depth, items, cur = 0, [], ""
    for ch in rest[1:]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                break
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    out = []
    for item in items:
        item = item.strip()
        if not item or item == "self":
            out.append(prefix)
            continue
        head = re.match(r"[\w:]*", item).group(0).rstrip(":")
        tail = item[len(head):].lstrip(":")
        if tail.startswith("{"):
            out.extend(expand(prefix + "::" + head, tail))
        else:
            out.append(prefix + "::" + head)
    return out


def main() -> int:
    files = {}
    for path in sorted(SRC.rglob("*.rs")):
        mod = module_of(path)
        if mod is not None:
            files[mod] = strip_comments(path.read_text())
    modules = set(files)
    edges = {m: set() for m in modules}
    for mod, text in files.items():
        for m in re.finditer(r"\b(crate|super)((?:::super)*)::(\{[^;]*?\}|[\w:]+)", text):
            kind, supers, rest = m.group(1), m.group(2), m.group(3)
            if kind == "crate":
                base = ()
            else:
                base = mod[: len(mod) - 1 - supers.count("super")]
            for full in expand("", rest):
                segs = tuple(s for s in full.split("::") if s)
                target = base + segs
                while target and target not in modules:
                    target = target[:-1]
                if target == mod or target[: len(mod)] == mod:
                    continue  # itself, or its own submodule (structure)
                edges[mod].add(target)
    def name(m):
        return "::".join(m) or "crate"

    if "--dot" in sys.argv:
        print("digraph modules {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{name(a)}" -> "{name(b)}";')
        print("}")
    failures = []
    for a in sorted(edges):
        if a and a[0] in LOWER and any(b[:1] == ("loader",) for b in edges[a]):
            failures.append(f"{name(a)} names the loader (a lower layer must not)")
    # Cycles: strongly connected components with more than one module.
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

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
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            visit(v)
    for comp in sccs:
        failures.append("import cycle: " + " <-> ".join(sorted(name(m) for m in comp)))
    n_edges = sum(len(e) for e in edges.values())
    if "--dot" not in sys.argv:
        for a in sorted(edges, key=name):
            print(f"{name(a)} -> {', '.join(sorted(name(b) for b in edges[a])) or '-'}")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    print(f"{len(modules)} modules, {n_edges} edges, {len(failures)} problems", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
