#!/usr/bin/env python3
"""Checks that .tf files are laid out the way `terraform fmt` lays them out, for machines
without the terraform binary. It follows hclwrite's own formatting rules (format.go):

- quoted strings are taken as one token each, so a template that spans lines is not
  supported (none of this repository's files has one);
- indentation: two spaces per line that opened brackets and has not closed them yet, with
  hclwrite's indent stack (a line like `tags = merge(var.tags, {` indents by one level,
  not two);
- alignment: in each run of consecutive lines that hold a whole `name = value` (a value
  that closes every bracket it opens), the `=` signs line up, one space after the longest
  name; any other line (blank, comment, block header, multi-line value, closing bracket)
  ends the run;
- one space after each assignment `=`, a space after each `,` that is not at the end of a
  line, none before it;
- no tabs, no trailing whitespace, no carriage returns, exactly one newline at the end.

Heredocs are refused rather than half-checked. Usage: tf_style.py [--fix] FILE...
With --fix the files are rewritten in place (indentation and alignment only).
"""

import re
import sys

TOKEN = re.compile(
    r"""
      (?P<comment>\#.*|//.*)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<op>==|!=|<=|>=|=>|&&|\|\||\.\.\.)
    | (?P<eq>=)
    | (?P<open>[{\[(])
    | (?P<close>[}\])])
    | (?P<comma>,)
    | (?P<other>[^\s"{}\[\](),=#/]+|/)
    """,
    re.VERBOSE,
)


class Line:
    def __init__(self, number, text):
        self.number = number
        self.text = text
        self.body = text.strip()
        self.tokens = tokenize(self.body, number) if self.body else []

    def net_brackets(self):
        net = 0
        for kind, _, _ in self.tokens:
            if kind == "open":
                net += 1
            elif kind == "close":
                net -= 1
        return net

    def assign_at(self):
        """Offset of the assignment `=` in the body if the line holds a whole attribute."""
        code = [t for t in self.tokens if t[0] != "comment"]
        for i, (kind, _, offset) in enumerate(code):
            if kind == "eq" and i > 0:
                rest = 0
                for k, v, _ in code[i:]:
                    rest += {"open": 1, "close": -1}.get(k, 0)
                return offset if rest == 0 else None
        return None


def tokenize(body, number):
    tokens = []
    pos = 0
    while pos < len(body):
        if body[pos] == " ":
            pos += 1
            continue
        match = TOKEN.match(body, pos)
        if not match:
            raise SyntaxError(f"line {number}: cannot read `{body[pos:]}`")
        kind = match.lastgroup
        if kind == "other" and match.group().startswith("<<"):
            raise SyntaxError(f"line {number}: heredocs are not supported by this checker")
        tokens.append((kind, match.group(), pos))
        pos = match.end()
    return tokens


def expected_indents(lines):
    indents = []
    expected = []
    for line in lines:
        if not line.body:
            expected.append(0)
            continue
        net = line.net_brackets()
        if net < 0:
            closed = -net
            while closed > 0 and indents:
                if closed > indents[-1]:
                    closed -= indents.pop()
                elif closed < indents[-1]:
                    indents[-1] -= closed
                    closed = 0
                else:
                    indents.pop()
                    closed = 0
        expected.append(2 * len(indents))
        if net > 0:
            indents.append(net)
    return expected


def expected_layout(lines):
    """Each line as terraform fmt would write its indentation and `=` alignment."""
    indents = expected_indents(lines)
    out = [" " * indent + line.body if line.body else "" for line, indent in zip(lines, indents)]
    run = []

    def close_run():
        if run:
            width = max(len(name) for _, name, _ in run)
            for i, name, value in run:
                out[i] = f"{name.ljust(width)} = {value}"
        run.clear()

    for i, line in enumerate(lines):
        at = line.assign_at() if line.body else None
        if at is None:
            close_run()
            continue
        name = " " * indents[i] + line.body[:at].rstrip()
        value = line.body[at + 1 :].strip()
        run.append((i, name, value))
    close_run()
    return out


def spacing_problems(line):
    problems = []
    for i, (kind, value, offset) in enumerate(line.tokens):
        if kind == "comma":
            if offset > 0 and line.body[offset - 1] == " ":
                problems.append("space before `,`")
            if offset + 1 < len(line.body) and line.body[offset + 1] != " ":
                problems.append("no space after `,`")
    return problems


def check(path, fix):
    raw = open(path, encoding="utf-8", newline="").read()
    problems = []
    if "\t" in raw:
        problems.append("contains a tab")
    if "\r" in raw:
        problems.append("contains a carriage return")
    if not raw.endswith("\n") or raw.endswith("\n\n"):
        problems.append("must end with exactly one newline")
    texts = raw.rstrip("\n").split("\n")
    try:
        lines = [Line(n + 1, t.replace("\t", "  ")) for n, t in enumerate(texts)]
    except SyntaxError as e:
        return [f"{path}:{e}"]
    layout = expected_layout(lines)
    for line, want in zip(lines, layout):
        where = f"{path}:{line.number}"
        if line.text != line.text.rstrip():
            problems.append(f"{where}: trailing whitespace")
        elif line.text != want:
            problems.append(f"{where}: terraform fmt would write\n    {want!r}\n  not\n    {line.text!r}")
        problems.extend(f"{where}: {p}" for p in spacing_problems(line))
    if fix:
        open(path, "w", encoding="utf-8").write("\n".join(layout) + "\n")
    return [p if p.startswith(path) else f"{path}: {p}" for p in problems]


def main(argv):
    fix = "--fix" in argv
    paths = [a for a in argv if a != "--fix"]
    if not paths:
        print(__doc__)
        return 2
    problems = []
    for path in paths:
        problems.extend(check(path, fix))
    for p in problems:
        print(p)
    if problems and not fix:
        print(f"{len(problems)} layout problem(s) in {len(paths)} file(s)", file=sys.stderr)
        return 1
    print(f"terraform fmt style: {len(paths)} file(s) {'rewritten' if fix else 'clean'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
