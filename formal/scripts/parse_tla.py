#!/usr/bin/env python3
"""Parses TLA+ files with the tree-sitter-tlaplus grammar; fails on any ERROR or MISSING node.

Usage: parse_tla.py FILE.tla...  (exit 1 when a file does not parse cleanly)
       parse_tla.py --self-test  (a deliberately broken module must be refused)

SANY and TLC are not available on these machines; this is a syntax check only.
"""

import sys
import warnings

import tree_sitter
import tree_sitter_tlaplus


def parser():
    with warnings.catch_warnings():
        # Older grammar wheels hand over the language as an int pointer.
        warnings.simplefilter("ignore", DeprecationWarning)
        language = tree_sitter.Language(tree_sitter_tlaplus.language())
    return tree_sitter.Parser(language)


def problems(source: bytes):
    """Every ERROR or MISSING node of `source`, as (line, column, kind, text)."""
    tree = parser().parse(source)
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            kind = "MISSING" if node.is_missing else "ERROR"
            text = source[node.start_byte : node.end_byte][:60].decode("utf-8", "replace")
            found.append((node.start_point[0] + 1, node.start_point[1] + 1, kind, text))
        stack.extend(node.children)
    if not found and tree.root_node.has_error:
        found.append((1, 1, "ERROR", "tree has errors"))
    modules = [c for c in tree.root_node.children if c.type == "module"]
    if not modules:
        found.append((1, 1, "ERROR", "no module"))
    return sorted(found)


BROKEN = b"""---- MODULE broken ----
EXTENDS Naturals
VARIABLE x
Init == x = 0
Next == x' = x + /\\ (
====
"""


def self_test() -> int:
    if not problems(BROKEN):
        print("self-test failed: a broken module parsed without errors")
        return 1
    ok = b"---- MODULE fine ----\nEXTENDS Naturals\nVARIABLE x\nInit == x = 0\n====\n"
    if problems(ok):
        print("self-test failed: a correct module was refused")
        return 1
    print("self-test: a broken module is refused, a correct one accepted")
    return 0


def main(argv) -> int:
    if argv == ["--self-test"]:
        return self_test()
    if not argv:
        print(__doc__)
        return 2
    failed = 0
    for path in argv:
        with open(path, "rb") as f:
            found = problems(f.read())
        if found:
            failed += 1
            for line, col, kind, text in found:
                print(f"{path}:{line}:{col}: {kind} near {text!r}")
        else:
            print(f"{path}: parses with no ERROR or MISSING node")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
