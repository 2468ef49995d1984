#!/usr/bin/env python3
"""Fails when a user-visible string in src/*.c is not marked for translation.

xgettext only sees what is already marked, so this looks from the other
side: it tokenizes the C sources and inspects the arguments of the places
where text reaches a user (stdout/stderr, problems and errors shown in the
tray, notifications, menu labels, "char **err" messages), including our
own functions whose parameter is called label, summary, body, title or
tooltip. A string literal
there must sit inside _(), N_(), P_(), C_() (or gettext and friends) unless
it has no words in it ("%s: %s\n") or the line carries a "no-i18n" comment
saying why (e.g. a D-Bus error name).

Usage: check-untranslated.py SRC_DIR [FILE...]
"""
import os
import re
import sys

MARKERS = {"_", "N_", "P_", "C_", "gettext", "ngettext", "dgettext", "dngettext",
           "pgettext", "vmo_pgettext"}

# name -> (argument indexes that reach the user, condition on the args or None)
STREAMS = {"stderr", "stdout"}
SINKS = {
    "printf": ([0], None),
    "vprintf": ([0], None),
    "puts": ([0], None),
    "fprintf": ([1], lambda a: first_ident(a[0]) in STREAMS),
    "vfprintf": ([1], lambda a: first_ident(a[0]) in STREAMS),
    "fputs": ([0], lambda a: len(a) > 1 and first_ident(a[1]) in STREAMS),
    "dprintf": ([1], lambda a: first_ident(a[0]) in {"STDERR_FILENO", "STDOUT_FILENO"}
                or arg_text(a[0]) in {"1", "2"}),
    "perror": ([0], None),
    "vm_add_problem": ([1], None),
    "vm_set_str": ([1], lambda a: "error" in idents(a[0])),
    "notifier_error": ([1, 2], None),
    "notify_notification_new": ([0, 1], None),
    "notify_notification_update": ([1, 2], None),
    "notify_notification_add_action": ([2], None),
    "errlist_add": ([2], None),
    "setting_error": ([2], None),
}
# Calls that never show their string arguments to anyone.
NOT_SINKS = {"strcmp", "strncmp", "strcasecmp", "strncasecmp", "strstr", "strchr",
             "strrchr", "strspn", "strcspn", "strlen", "strdup", "strndup", "free",
             "memcmp", "memcpy", "sscanf", "fopen", "open", "getenv", "setenv",
             "dbus_message_new_method_call", "dbus_message_is_method_call",
             "dbus_message_is_signal", "dbus_message_has_member", "g_strcmp0"}
# "char **err" convention: every string given to a call together with err
# (or error) becomes the translated message the contract promises.
ERR_ARGS = {"err", "error", "errp"}
# f(..., "label", "Quit", ...) and .label = "Quit" in menu/notification code.
USER_KEYS = {"label", "accessible-desc", "title", "summary", "body", "tooltip"}
USER_FIELDS = {"label", "title", "summary", "body", "tooltip", "tooltip_title",
               "tooltip_text", "description"}
ALLOWED_WORDS = {"vmoverlay"}
ALLOWED_NAMES_RE = re.compile(r"\bvmoverlay(-helper)?\b")
# Functions of ours whose parameter has one of these names take user text:
# learnt from the definitions and prototypes in src/ (menu add_item(...,
# label, ...), notifier_error(n, summary, body), ...).
USER_PARAMS = {"label", "summary", "body", "title", "tooltip", "tooltip_title",
               "tooltip_text", "user_message"}

FORMAT_RE = re.compile(r"%(\d+\$)?[-+ #0']*(\*|\d+)?(\.(\*|\d+))?(hh|h|ll|l|L|z|j|t|q)?"
                       r"[diouxXeEfFgGaAcspmn%]")
ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]+|[0-7]{1,3}|.)")
WORD_RE = re.compile(r"[A-Za-z]{2,}")


class Tok:
    __slots__ = ("kind", "text", "line")

    def __init__(self, kind, text, line):
        self.kind, self.text, self.line = kind, text, line


def tokenize(src):
    """C tokens with line numbers; comments dropped (lines with a no-i18n
    comment are returned separately), preprocessor lines skipped."""
    toks, exempt = [], set()
    i, n, line = 0, len(src), 1
    at_line_start = True
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
            at_line_start = True
            continue
        if c in " \t\r\f\v":
            i += 1
            continue
        if at_line_start and c == "#":
            # Preprocessor directive, with backslash continuations.
            while i < n and src[i] != "\n":
                if src[i] == "\\" and i + 1 < n and src[i + 1] == "\n":
                    line += 1
                    i += 2
                    continue
                i += 1
            continue
        at_line_start = False
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            if "no-i18n" in src[i:j]:
                exempt.add(line)
            i = j
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            text = src[i:j]
            if "no-i18n" in text:
                exempt.add(line + text.count("\n"))
                exempt.add(line)
            line += text.count("\n")
            i = j
            continue
        if c == '"' or c == "'":
            j = i + 1
            while j < n and src[j] != c:
                if src[j] == "\\":
                    j += 1
                elif src[j] == "\n":
                    break
                j += 1
            toks.append(Tok("str" if c == '"' else "chr", src[i + 1:j], line))
            i = j + 1
            continue
        if c.isalpha() or c == "_":
            j = i + 1
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            word = src[i:j]
            # String prefixes: L"..", u8"..": the prefix is not an identifier.
            if word in ("L", "u", "U", "u8") and j < n and src[j] == '"':
                i = j
                continue
            toks.append(Tok("id", word, line))
            i = j
            continue
        if c.isdigit():
            j = i + 1
            while j < n and (src[j].isalnum() or src[j] in "._"):
                j += 1
            toks.append(Tok("num", src[i:j], line))
            i = j
            continue
        if src.startswith("->", i):
            toks.append(Tok("op", "->", line))
            i += 2
            continue
        toks.append(Tok("op", c, line))
        i += 1
    return toks, exempt


def first_ident(arg):
    for t in arg:
        if t.kind == "id":
            return t.text
    return None


def idents(arg):
    return {t.text for t in arg if t.kind == "id"}


def arg_text(arg):
    return "".join(t.text for t in arg)


def split_args(toks, open_idx):
    """Arguments (token lists) of the call whose '(' is at open_idx."""
    args, cur, depth = [], [], 0
    i = open_idx + 1
    while i < len(toks):
        t = toks[i]
        if t.kind == "op" and t.text in "([{":
            depth += 1
        elif t.kind == "op" and t.text in ")]}":
            if depth == 0:
                if cur or args:
                    args.append(cur)
                return args
            depth -= 1
        elif t.kind == "op" and t.text == "," and depth == 0:
            args.append(cur)
            cur = []
            i += 1
            continue
        cur.append(t)
        i += 1
    return args


def is_wordy(text):
    s = ESCAPE_RE.sub(" ", text)
    s = FORMAT_RE.sub(" ", s)
    s = ALLOWED_NAMES_RE.sub(" ", s)
    return any(w not in ALLOWED_WORDS for w in WORD_RE.findall(s))


def is_prose(text):
    """At least two words: a single token ("qemu-io", "GetCapabilities")
    is a name, not a sentence."""
    s = ALLOWED_NAMES_RE.sub(" ", FORMAT_RE.sub(" ", ESCAPE_RE.sub(" ", text)))
    words = [w for w in s.split() if WORD_RE.search(w) and w not in ALLOWED_WORDS]
    return len(words) >= 2


def bare_literals(arg):
    """String literals in arg that no marker call encloses (adjacent
    literals count as one)."""
    found, stack = [], []
    prev_str = False
    for k, t in enumerate(arg):
        if t.kind == "id" and k + 1 < len(arg) and arg[k + 1].kind == "op" and arg[k + 1].text == "(":
            stack.append(t.text)
            continue
        if t.kind == "op" and t.text == "(":
            if not (k > 0 and arg[k - 1].kind == "id"):
                stack.append("")
            prev_str = False
            continue
        if t.kind == "op" and t.text == ")":
            if stack:
                stack.pop()
            prev_str = False
            continue
        if t.kind == "str":
            marked = any(s in MARKERS for s in stack)
            if prev_str and found and found[-1][2] == marked:
                found[-1] = (found[-1][0], found[-1][1] + t.text, marked)
            else:
                found.append((t.line, t.text, marked))
            prev_str = True
            continue
        prev_str = t.kind == "id" and prev_str  # "a" PRIu64 "b"
    return [(line, text) for line, text, marked in found if not marked]


def closing_paren(toks, open_idx):
    depth = 0
    for i in range(open_idx, len(toks)):
        t = toks[i]
        if t.kind == "op" and t.text == "(":
            depth += 1
        elif t.kind == "op" and t.text == ")":
            depth -= 1
            if depth == 0:
                return i
    return None


def learn_sinks(path, learnt):
    """Adds {function: {arg index}} for parameters named in USER_PARAMS."""
    with open(path, encoding="utf-8") as f:
        toks, _ = tokenize(f.read())
    for i, t in enumerate(toks[:-1]):
        if t.kind != "id" or toks[i + 1].text != "(" or i == 0:
            continue
        # A declaration has a type word (or '*') right before the name.
        prev = toks[i - 1]
        if not (prev.kind == "id" or (prev.kind == "op" and prev.text == "*")):
            continue
        if prev.kind == "id" and prev.text in ("return", "sizeof", "else", "case"):
            continue
        end = closing_paren(toks, i + 1)
        if end is None or end + 1 >= len(toks) or toks[end + 1].text not in ("{", ";", "__attribute__"):
            continue
        for k, param in enumerate(split_args(toks, i + 1)):
            names = [p.text for p in param if p.kind == "id"]
            # "const char *label" (at least a type and a name)
            if len(names) >= 2 and names[-1] in USER_PARAMS:
                learnt.setdefault(t.text, set()).add(k)


def check_file(path, rel, learnt):
    with open(path, encoding="utf-8") as f:
        src = f.read()
    toks, exempt = tokenize(src)
    token_lines = {t.line for t in toks}
    problems = []

    def report(line, text, why, prose_only=False):
        # A no-i18n comment on the line, or alone on the line above.
        if line in exempt or ((line - 1) in exempt and (line - 1) not in token_lines):
            return
        if not is_wordy(text) or (prose_only and not is_prose(text)):
            return
        problems.append(f'{rel}:{line}: not marked for translation ({why}): "{text}"')

    for i, t in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        # .label = "..." / ->label = "..."
        if (t.kind == "id" and t.text in USER_FIELDS and i > 0 and toks[i - 1].kind == "op"
                and toks[i - 1].text in (".", "->") and nxt is not None and nxt.text == "="):
            j = i + 2
            if j < len(toks) and toks[j].kind == "str":
                report(toks[j].line, toks[j].text, f"field {t.text}")
            continue
        if t.kind != "id" or nxt is None or nxt.kind != "op" or nxt.text != "(":
            continue
        name = t.text
        if name in MARKERS or name in NOT_SINKS or name.startswith("log_") or name == "log_msg":
            continue
        # Skip declarations/definitions: "type name(" preceded by a type word.
        args = split_args(toks, i + 1)
        if name in SINKS or name in learnt:
            idx, cond = SINKS.get(name, (sorted(learnt.get(name, ())), None))
            if cond is None or (args and cond(args)):
                for k in idx:
                    if k < len(args):
                        for line, text in bare_literals(args[k]):
                            report(line, text, f"{name}() argument {k + 1}")
            continue
        # key/value pairs: f(..., "label", "Quit", ...)
        for k in range(len(args) - 1):
            a = args[k]
            if len(a) == 1 and a[0].kind == "str" and a[0].text in USER_KEYS:
                for line, text in bare_literals(args[k + 1]):
                    report(line, text, f'value of "{a[0].text}"')
        # the char **err convention
        if any(len(a) == 1 and a[0].kind == "id" and a[0].text in ERR_ARGS for a in args):
            for a in args:
                for line, text in bare_literals(a):
                    report(line, text, f"{name}() with err", prose_only=True)
    return problems


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    src_dir = sys.argv[1]
    files = sys.argv[2:] or sorted(
        os.path.join(src_dir, f) for f in os.listdir(src_dir) if f.endswith(".c"))
    if not files:
        print(f"check-untranslated: no C files in {src_dir}", file=sys.stderr)
        return 2
    learnt = {}
    headers = sorted(os.path.join(src_dir, f) for f in os.listdir(src_dir) if f.endswith(".h"))
    for path in headers + files:
        learn_sinks(path, learnt)
    problems = []
    for path in files:
        problems += check_file(path, os.path.relpath(path, os.path.dirname(src_dir.rstrip("/"))),
                               learnt)
    for p in problems:
        print(p)
    print(f"check-untranslated: {len(files)} files, {len(problems)} unmarked user-visible strings")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
