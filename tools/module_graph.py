#!/usr/bin/env python3
"""The crate's module import graph: fails on a cycle, or on an import against the layer order;
and the Python package's (every import, lazy ones in functions too): fails on a cycle.

One node per source file (`src/store/csr.rs` is `store::csr`). An edge A -> B for every path
`crate::B::...` / `super::...` that A names (in `use` lines and inline), resolved to the
deepest module that exists and then through re-exports (`crate::Result` is `error`,
`crate::store::Dtype` is `zarr::dtype`). A parent naming its own submodules (`mod x; pub use
x::Y;`) is structure, not a dependency, and is not an edge; everything else is.

Layers, lowest first (LAYERS): a module may name modules of its own layer or below, never above.

    python3 tools/module_graph.py [--dot]     # prints the graph (or Graphviz) and checks it
"""
import ast
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PY = Path(__file__).resolve().parent.parent / "python"
# The data path, lowest layer first: bytes -> zarr arrays -> AnnData elements -> row spaces and
# samplers -> batch assembly (and the converter) -> the producer thread -> tensors -> the loader
# -> the front ends. The crate root (lib.rs) re-exports and is above all.
LAYERS = (
    ("error", "budget", "batch", "dlpack"),
    ("storage",),
    ("zarr",),
    ("store",),
    ("collection", "sampler"),
    ("assemble", "convert", "demo"),
    ("pipeline",),
    ("cuda", "tensor"),
    ("loader",),
    ("throughput", "capi", "python"),
)
# The files that may hold `unsafe` (STYLE.md: where memory crosses a boundary, or the kernel or
# a C library is asked for it). A new one is a decision: add it here, and say why in SAFETY lines.
UNSAFE_FILES = {
    "capi.rs",               # the C ABI
    "cuda.rs",               # loading libcuda
    "cuda/device_memory.rs",  # device buffers, events, contexts (driver calls)
    "cuda/page_lock.rs",     # host buffers page-locked (cuMemHostRegister)
    "cuda/upload.rs",        # host-to-device copies, device arrays handed out
    "dlpack/export.rs",      # DLPack managed tensors handed out and their deleters
    "dlpack/ffi.rs",         # the DLPack C structs
    "dlpack/import.rs",      # foreign tensors read by their pointers
    "python/arrays.rs",      # PyCapsule glue
    "storage/files/direct.rs",  # O_DIRECT reads into aligned mappings
    "store/h5ad/direct.rs",  # one HDF5 call hdf5-metno does not wrap (chunk addresses)
    "tensor/from_dlpack.rs",  # the C++ shim making tch tensors of DLPack arrays
    "zarr/inner_codec.rs",   # c-blosc
    "zarr/streaming_copy.rs",  # non-temporal stores
}
LAYER_OF = {top: i for i, tops in enumerate(LAYERS) for top in tops}


def layer(mod: tuple) -> int:
    return LAYER_OF.get(mod[0], len(LAYERS)) if mod else len(LAYERS)


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
    """Paths named by `prefix::rest`, where rest may start with a `{...}` group (`as` names
    dropped)."""
    rest = rest.strip()
    if not rest.startswith("{"):
        rest = re.match(r"[\w:]*", rest).group(0)
    out = []
    for item in use_items(rest):
        path = item.partition(" as ")[0].strip().strip(":")
        out.append(prefix + "::" + path if path else prefix)
    return out


def use_items(text: str) -> list:
    """`a::{b, c::{D as E}}` -> ["a::b", "a::c::D as E"]."""
    text = " ".join(text.split())
    i = text.find("{")
    if i < 0:
        return [text.strip()]
    # Up to the group's own closing brace (or the end: a path cut by the caller's regex).
    prefix, parts, depth, cur = text[:i], [], 0, ""
    for ch in text[i + 1 :]:
        if ch == "}" and depth == 0:
            break
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for part in parts:
        part = part.strip()
        if part == "self":
            out.append(prefix.rstrip(":"))
        elif part:
            out.extend(prefix + item for item in use_items(part))
    return out


def absolute(mod: tuple, segs: list) -> tuple:
    """A path named in `mod` (crate::, super::, self:: or relative) as segments from the root."""
    if segs and segs[0] == "crate":
        return tuple(segs[1:])
    base = mod
    while segs and segs[0] in ("super", "self"):
        if segs[0] == "super":
            base = base[:-1]
        segs = segs[1:]
    return base + tuple(segs)


def python_cycles() -> list:
    """Cycles among the Python package's modules. A package's `__init__` naming its own
    submodules is structure, not an edge (as `mod x; pub use x::Y;` in Rust)."""
    mods = {}
    for path in sorted(PY.rglob("*.py")):
        parts = path.relative_to(PY).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    edges = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = node.module
                if node.level:
                    origin = ".".join(base + ([node.module] if node.module else []))
                names = [f"{origin}.{a.name}" for a in node.names] + [origin]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for full in names:
                while full and full not in mods:
                    full = full.rpartition(".")[0]
                own = path.name == "__init__.py" and full.startswith(mod + ".")
                if full and full != mod and not own:
                    edges[mod].add(full)
    # Cycles: a module that reaches itself.
    cycles = set()
    for start in mods:
        seen, todo = set(), list(edges[start])
        while todo:
            m = todo.pop()
            if m == start:
                cycles.add(start)
                break
            if m not in seen:
                seen.add(m)
                todo.extend(edges[m])
    return [f"Python import cycle through {m}" for m in sorted(cycles)]


def main() -> int:
    files = {}
    for path in sorted(SRC.rglob("*.rs")):
        mod = module_of(path)
        if mod is not None:
            # A file's `mod tests` is left out: its `super::` paths are one level deeper.
            text = path.read_text().split("#[cfg(test)]\nmod tests")[0]
            files[mod] = strip_comments(text)
    modules = set(files)
    # (module, name it re-exports) -> the full path it re-exports.
    reexports = {}
    for mod, text in files.items():
        for m in re.finditer(r"\bpub(?:\([\w ]+\))?\s+use\s+([^;]+);", text):
            for item in use_items(m.group(1)):
                path, _, alias = item.partition(" as ")
                segs = [x for x in path.strip().split("::") if x]
                if segs:
                    reexports[(mod, alias.strip() or segs[-1])] = absolute(mod, segs)

    def resolve(path: tuple) -> tuple:
        for _ in range(16):
            target = path
            while target and target not in modules:
                target = target[:-1]
            rest = path[len(target):]
            if not rest or (target, rest[0]) not in reexports:
                return target
            path = reexports[(target, rest[0])] + rest[1:]
        return target

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
                target = resolve(base + segs)
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
    failures = python_cycles()
    for path in sorted(SRC.rglob("*.rs")):
        rel = path.relative_to(SRC).as_posix()
        if re.search(r"\bunsafe\b", strip_comments(path.read_text())) and rel not in UNSAFE_FILES:
            failures.append(f"{rel} holds unsafe code and is not in UNSAFE_FILES")
    for a in sorted(edges):
        for b in sorted(edges[a]):
            if layer(b) > layer(a):
                failures.append(f"{name(a)} names {name(b)}, a layer above it")
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
