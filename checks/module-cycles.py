#!/usr/bin/env python3
"""Fails when a module of a workspace crate depends, directly or through others, on itself.

    python3 checks/module-cycles.py [--verbose] [CRATE_DIR...]   # default: every workspace member
    python3 checks/module-cycles.py --self-test                  # plants cycles, checks they are found

How it reads a crate (no compiler, no new toolchain: the standard library of Python 3):
- the module tree from each crate root (src/lib.rs, src/main.rs, src/bin/*.rs) through
  `mod name;` declarations (`name.rs` or `name/mod.rs`); modules behind `#[cfg(test)]` and
  every `#[cfg(test)]` item are left out: tests may use anything;
- each module's references, with comments and string literals removed: `use` trees, and paths
  that start with `crate::`, `super::`, `self::` or the name of one of the module's own children;
  a path is resolved down the tree as far as it names modules, then through the `pub use`
  re-exports of the module it ends in, so `use super::Thing` counts as a use of the sibling
  that defines `Thing` when the parent only re-exports it.

A dependency A → B (A ≠ B) is an edge between the two children of their closest common module
M that contain A and B, where M's own file counts as a node of its own (written `M (self)`): a
parent file that uses a child, and a child that uses an item defined in the parent's file, make
the cycle `M (self) ↔ child`; move the shared item into a module of its own, below both.
The check reports every strongly connected set of nodes with more than one member, with one
example reference (file:line) per edge, and exits 1 if there is any.
"""
import os
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Cycles tolerated for now, in one place so the list can only shrink: (crate root, module whose
# children form the cycle, the members) -> why. A listed cycle that no longer occurs is reported
# as stale (remove it); a cycle with other members is not covered.
KNOWN = {}
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


# ---------------------------------------------------------------- lexing


def strip_code(text):
    """Returns `text` with comments, string and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        return "".join(c if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif re.match(r'(b|c)?r#*"', text[i:i + 300]) and (i == 0 or not re.match(r"[A-Za-z0-9_]", text[i - 1])):
            m = re.match(r'(b|c)?r(#*)"', text[i:])
            end = '"' + m.group(2)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + blank(text[i + 2:j]))
            i = j
        elif c == '"' or (c in "bc" and text.startswith('"', i + 1) and (i == 0 or not re.match(r"[A-Za-z0-9_]", text[i - 1]))):
            j = i + (1 if c == '"' else 2)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + blank(text[i + 2:j + 1]))
            i = j + 1
        elif c == "'":
            # a char literal ('a', '\n', '\u{1F600}') or a lifetime ('a): only the former is blanked
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'\n])'", text[i:])
            if m:
                out.append(blank(m.group(0)))
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def skip_item(code, i):
    """Index just past the item that starts at `i` (ends at its `;` or its closing brace)."""
    depth, n = 0, len(code)
    while i < n:
        c = code[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == ";" and depth == 0:
            return i + 1
        elif c == "{" and depth == 0:
            level = 1
            i += 1
            while i < n and level:
                level += {"{": 1, "}": -1}.get(code[i], 0)
                i += 1
            return i
        i += 1
    return n


CFG_TEST = re.compile(r"#\[cfg\((test|all\(test\b[^\]]*|any\(test\b[^\]]*)\)\]")


def remove_test_items(code):
    """Blanks every item under `#[cfg(test)]`; returns (code, names of `#[cfg(test)] mod x;`)."""
    test_mods = set()
    while True:
        m = CFG_TEST.search(code)
        if not m:
            return code, test_mods
        start = m.start()
        j = m.end()
        # further attributes and whitespace up to the item
        while True:
            ws = re.match(r"\s*#\[[^\]]*\]|\s+", code[j:])
            if not ws:
                break
            j += ws.end()
        decl = re.match(r"(pub(\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", code[j:])
        if decl:
            test_mods.add(decl.group(3))
        end = skip_item(code, j)
        code = code[:start] + "".join(c if c == "\n" else " " for c in code[start:end]) + code[end:]


def line_of(code, index):
    return code.count("\n", 0, index) + 1


# ---------------------------------------------------------------- the module tree


class Module:
    def __init__(self, path, file, parent):
        self.path = path  # tuple of names below the crate root
        self.file = file
        self.parent = parent
        self.children = {}
        self.code = ""
        self.reexports = {}  # name -> absolute path (tuple) it re-exports
        self.glob_reexports = []  # absolute paths of `pub use path::*`

    def defines(self, name):
        return re.search(r"\b(struct|enum|union|fn|const|static|type|trait|mod|macro_rules!)\s+" + re.escape(name) + r"\b", self.code)

    def name(self):
        return "::".join(self.path) or "crate"


def child_file(mod_file, name, is_dir_owner):
    base = os.path.dirname(mod_file) if is_dir_owner else os.path.splitext(mod_file)[0]
    for cand in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
        if os.path.isfile(cand):
            return cand
    return None


def load_tree(root_file):
    modules = {}

    def load(path, file, parent, dir_owner):
        mod = Module(path, file, parent)
        modules[path] = mod
        with open(file, encoding="utf-8") as f:
            code = strip_code(f.read())
        code, test_mods = remove_test_items(code)
        mod.code = code
        for m in re.finditer(r"^\s*(pub(\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", code, re.M):
            name = m.group(3)
            if name in test_mods:
                continue
            cf = child_file(file, name, dir_owner)
            if cf is None:
                continue
            mod.children[name] = load(path + (name,), cf, mod, os.path.basename(cf) == "mod.rs")
        return mod

    load((), root_file, None, True)
    return modules


# ---------------------------------------------------------------- references


def expand_use_tree(tree):
    """`a::{b, c::{d, e as f}, self}` -> [([a,b],b), ([a,c,d],d), ([a,c,e],f), ([a,self],self)]."""
    tree = re.sub(r"\s+", " ", tree).strip()
    out = []

    def split_top(s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        return [p.strip() for p in parts if p.strip()]

    def walk(prefix, s):
        s = s.strip()
        if s.startswith("::"):
            s = s[2:].strip()
        brace = s.find("{")
        if brace >= 0 and s.endswith("}"):
            head = [p.strip() for p in s[:brace].split("::") if p.strip()]
            for part in split_top(s[brace + 1:-1]):
                walk(prefix + head, part)
        else:
            alias = re.search(r"\s+as\s+(" + IDENT + r")$", s)
            s = re.sub(r"\s+as\s+" + IDENT + r"$", "", s)
            segs = prefix + [p.strip() for p in s.split("::") if p.strip()]
            out.append((segs, alias.group(1) if alias else segs[-1]))

    walk([], tree)
    return out


USE = re.compile(r"\b(pub(\([^)]*\))?\s+)?use\s+([^;]*);")
PATH = re.compile(r"(?<![A-Za-z0-9_:])(" + IDENT + r")((\s*::\s*" + IDENT + r")+)")


def absolute(mod, modules, segs):
    """The absolute path named by `segs` from inside `mod`, or None for an external path."""
    if not segs:
        return None
    first = segs[0]
    if first == "crate":
        base, rest = (), segs[1:]
    elif first in ("self", "super"):
        base, rest = mod.path, segs
        while rest and rest[0] in ("self", "super"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    elif first in mod.children:
        base, rest = mod.path, segs
    elif mod.parent is None and first in modules[()].children:
        base, rest = (), segs
    else:
        return None
    return tuple(base) + tuple(rest)


def resolve(modules, abs_path, depth=0):
    """The module an absolute path ends in, following `pub use` re-exports."""
    mod = modules[()]
    for i, seg in enumerate(abs_path):
        if seg == "self":
            continue
        if seg in mod.children:
            mod = mod.children[seg]
            continue
        if seg == "*":
            return mod
        target = mod.reexports.get(seg)
        if target is not None and depth < 8:
            return resolve(modules, target + tuple(abs_path[i + 1:]), depth + 1)
        if not mod.defines(seg) and depth < 8:
            for glob in mod.glob_reexports:
                inner = resolve(modules, glob, depth + 1)
                if inner.defines(seg) or seg in inner.reexports:
                    return resolve(modules, inner.path + tuple(abs_path[i:]), depth + 1)
        return mod
    return mod


def collect(modules):
    """[(from module, to module, file, line, text)] for every crate-local reference."""
    for mod in modules.values():
        for m in USE.finditer(mod.code):
            if not m.group(1):
                continue
            for segs, name in expand_use_tree(m.group(3)):
                ap = absolute(mod, modules, segs)
                if ap and segs[-1] == "*":
                    mod.glob_reexports.append(ap[:-1])
                elif ap and segs[-1] != "self":
                    mod.reexports[name] = ap
    refs = []
    for mod in modules.values():
        code = mod.code
        spans = []
        for m in USE.finditer(code):
            spans.append((m.start(), m.end()))
            if m.group(1):
                continue  # a re-export is API surface, not a use; references resolve through it
            for segs, _ in expand_use_tree(m.group(3)):
                ap = absolute(mod, modules, segs)
                if ap is not None:
                    refs.append((mod, resolve(modules, ap), mod.file, line_of(code, m.start()), "use " + "::".join(segs)))
        for m in PATH.finditer(code):
            if any(a <= m.start() < b for a, b in spans):
                continue
            segs = [m.group(1)] + [s.strip() for s in m.group(2).split("::") if s.strip()]
            ap = absolute(mod, modules, segs)
            if ap is not None:
                refs.append((mod, resolve(modules, ap), mod.file, line_of(code, m.start()), "::".join(segs)))
    return refs


# ---------------------------------------------------------------- cycles


def edges_by_level(refs):
    """{level path: {(a, b): (file, line, text)}} where a and b are child names or 'self'."""
    levels = {}
    for src, dst, file, line, text in refs:
        a, b = src.path, dst.path
        if a == b:
            continue
        k = 0
        while k < len(a) and k < len(b) and a[k] == b[k]:
            k += 1
        level = a[:k]
        na = a[k] if k < len(a) else "(self)"
        nb = b[k] if k < len(b) else "(self)"
        levels.setdefault(level, {}).setdefault((na, nb), (file, line, text))
    return levels


def strongly_connected(nodes, edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    succ = {n: sorted(b for (a, b) in edges if a == n) for n in nodes}

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ[v]:
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
                out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def cycles_of_root(root_file, rel_to):
    modules = load_tree(root_file)
    found = []
    for level, edges in sorted(edges_by_level(collect(modules)).items()):
        nodes = {n for e in edges for n in e}
        for comp in strongly_connected(nodes, edges):
            where = "::".join(level) or "crate"
            lines = []
            for (a, b), (file, line, text) in sorted(edges.items()):
                if a in comp and b in comp:
                    lines.append(f"    {a} -> {b}   {os.path.relpath(file, rel_to)}:{line}  {text}")
            found.append((where, comp, lines))
    return modules, found


def crate_roots(crate_dir):
    src = os.path.join(crate_dir, "src")
    roots = [os.path.join(src, f) for f in ("lib.rs", "main.rs") if os.path.isfile(os.path.join(src, f))]
    bins = os.path.join(src, "bin")
    if os.path.isdir(bins):
        for f in sorted(os.listdir(bins)):
            p = os.path.join(bins, f)
            if f.endswith(".rs"):
                roots.append(p)
            elif os.path.isfile(os.path.join(p, "main.rs")):
                roots.append(os.path.join(p, "main.rs"))
    return roots


def workspace_members(root):
    with open(os.path.join(root, "Cargo.toml"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^members\s*=\s*\[([^\]]*)\]", text, re.M)
    return [os.path.join(root, s) for s in re.findall(r'"([^"]+)"', m.group(1))]


def check(crate_dirs, rel_to, verbose=False, out=sys.stdout, known=None):
    known = KNOWN if known is None else known
    total, modules_seen, seen_known = 0, 0, set()
    for crate in crate_dirs:
        for root_file in crate_roots(crate):
            modules, found = cycles_of_root(root_file, rel_to)
            modules_seen += len(modules)
            root_rel = os.path.relpath(root_file, rel_to)
            if verbose:
                print(f"{root_rel}: {len(modules)} modules, {len(found)} cycles", file=out)
            for where, comp, lines in found:
                key = (root_rel, where, tuple(comp))
                if key in known:
                    seen_known.add(key)
                    print(f"known cycle in {root_rel} under {where}: {' <-> '.join(comp)} ({known[key]})", file=out)
                    if verbose:
                        print("\n".join(lines), file=out)
                    continue
                total += 1
                print(f"cycle in {root_rel} under {where}: {' <-> '.join(comp)}", file=out)
                for line in lines:
                    print(line, file=out)
    checked = {os.path.relpath(r, rel_to) for c in crate_dirs for r in crate_roots(c)}
    for key in sorted(set(known) - seen_known):
        if key[0] in checked:
            print(f"stale exception (no longer a cycle; remove it from KNOWN): {key}", file=out)
    return total, modules_seen


# ---------------------------------------------------------------- self-test


def self_test():
    """Plants cycles (and near misses) in a scratch crate; the check must find exactly the cycles."""
    files = {
        # crate root: declares everything; root -> a is fine (parent uses child)
        "src/lib.rs": "pub mod a;\npub mod b;\npub mod c;\npub mod d;\npub mod e;\n"
        "#[cfg(test)]\nmod tests;\npub fn f() { a::x(); }\n",
        # a -> b -> c -> a: a planted three-module cycle, through a `use` tree and a path
        "src/a.rs": "use crate::{b::{self, Y}};\npub fn x() { b::y(); }\n",
        "src/b.rs": "pub struct Y;\npub fn y() { crate::c::z(); }\n",
        "src/c.rs": "// crate::d::nothing() is a comment\npub fn z() { let _ = \"crate::d::w\"; super::a::x(); }\n",
        # d/mod.rs <-> d::inner: a parent file and its child using each other's items
        "src/d/mod.rs": "mod inner;\npub struct Shared;\npub fn run() { inner::go(); }\n",
        "src/d/inner.rs": "use super::Shared;\npub fn go() { let _ = Shared; }\n",
        # e re-exports from its child e::low; e::high uses it through the re-export: no cycle
        "src/e/mod.rs": "mod high;\nmod low;\npub use low::Base;\npub fn e() { high::h(); }\n",
        "src/e/high.rs": "use super::Base;\npub fn h() { let _ = Base; }\n",
        "src/e/low.rs": "pub struct Base;\n#[cfg(test)]\nmod t { use super::super::high::h; }\n",
        # tests may use anything
        "src/tests.rs": "use crate::a::x;\n",
    }
    with tempfile.TemporaryDirectory() as tmp:
        for rel, text in files.items():
            p = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w", encoding="utf-8") as f:
                f.write(text)
        _, found = cycles_of_root(os.path.join(tmp, "src/lib.rs"), tmp)
        got = sorted((where, tuple(comp)) for where, comp, _ in found)
        want = [("crate", ("a", "b", "c")), ("d", ("(self)", "inner"))]
        if got != want:
            print(f"self-test FAILED: found {got}, want {want}")
            for where, comp, lines in found:
                print("\n".join(lines))
            return 1
        # the fix of the planted cycle: c no longer uses a
        with open(os.path.join(tmp, "src/c.rs"), "w", encoding="utf-8") as f:
            f.write("pub fn z() {}\n")
        _, found = cycles_of_root(os.path.join(tmp, "src/lib.rs"), tmp)
        if [(w, tuple(c)) for w, c, _ in found] != [("d", ("(self)", "inner"))]:
            print(f"self-test FAILED after the fix: {found}")
            return 1
    # the lexer: comments, strings, raw strings, chars and lifetimes
    s = strip_code("a /* x /* y */ */ b // c\n\"d\\\"e\" r#\"f\"# 'g' '\\n' &'h str")
    if "x" in s or "y" in s or " c" in s or "d" in s or "f" in s or "'g'" in s or "'h" not in s:
        print(f"self-test FAILED: strip_code gave {s!r}")
        return 1
    print("self-test ok: planted cycles found (crate: a -> b -> c -> a; d (self) <-> d::inner), none in re-exports, comments, strings or tests")
    return 0


def main(argv):
    if "--self-test" in argv:
        return self_test()
    verbose = "--verbose" in argv
    dirs = [os.path.abspath(a) for a in argv if not a.startswith("--")] or workspace_members(ROOT)
    total, seen = check(dirs, ROOT, verbose)
    if total:
        print(f"module-cycles: {total} cycle(s) among {seen} modules; break each (a module of its own below both sides)")
        return 1
    print(f"module-cycles: no cycle among {seen} modules of {len(dirs)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
