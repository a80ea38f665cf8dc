"""The one exception type for bad user input.

Raised where input enters (CSV reader, device/recipe loader, CLI) and turned by the CLI into a
one-line message and exit code 2.
"""


class UserInputError(ValueError):
    """Bad input from the user: a file, a key, a value. The message is one line and names it."""


class OutputError(OSError):
    """An output file could not be written (disk full, file-size limit, permissions); the
    message is one line naming the file. Earlier outputs are intact (writes are atomic)."""


def safe_text(text: str, limit: int = 300) -> str:
    """User-derived text fit to print: control characters shown as escapes (`\\x1b`), and at
    most `limit` characters, the rest summarised as "… (N bytes)"."""
    out = []
    for ch in text:
        code = ord(ch)
        out.append(ch if (code >= 32 and code != 127) or ch == "\t" else f"\\x{code:02x}")
    escaped = "".join(out)
    if len(escaped) > limit:
        return escaped[:limit] + f"… ({len(text.encode('utf-8', 'replace'))} bytes)"
    return escaped


def short_repr(value, limit: int = 80) -> str:
    """repr of a user's value, bounded in depth and length (YAML anchors can make huge values)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxdict, r.maxlevel, r.maxtuple, r.maxset = limit, limit, 8, 8, 3, 8, 8
    return safe_text(r.repr(value), limit)
