"""Credentials in commands: command lines (shell strings and argv reprs) and datastore authentication commands.

`CommandLineDetector` knows, per program, which options carry a password (`mysql -p<pw>`, `docker login -p <pw>`,
`redis-cli -a <pw>`, `curl -u user:<pw>`, `sqlcmd -P <pw>`, `openssl -passin pass:<pw>` ...), because the same
letter means a port or a directory elsewhere (`ssh -p 2222`, `mkdir -p`, `docker run -p 8080:80`). It reads
shell-like strings and the repr of an argv list (`['mysql', '-p<pw>']`, as `subprocess.CalledProcessError`
prints it); long options named like a secret (`'--password', '<pw>'`) are found in argv reprs of any program.

`DatastoreAuthDetector` finds the password in Redis `AUTH [user] <pw>`, `HELLO 3 AUTH user <pw>`,
`CONFIG SET requirepass|masterauth <pw>`, `ACL SETUSER ... ><pw>`, and in SQL `IDENTIFIED [WITH plugin] BY <pw>`,
`[ENCRYPTED] PASSWORD [=] '<pw>'`, `SET PASSWORD [FOR user] = '<pw>'`. In a recorded statement (`db.statement`,
`db.query.text`) Redis commands are matched in any case; in free text only in upper case, and a one-word
argument that reads like a status (`AUTH OK`, `AUTH failed`) is not taken for a password.

Only the password is replaced: the option, the user name before the colon and the rest of the command stay.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from veil.redaction.keys import KeyClassifier
from veil.redaction.rules import Match, could_be_credential, is_placeholder


@dataclass(frozen=True)
class _Program:
    attached: frozenset[str] = frozenset()  # `-p<pw>`
    spaced: frozenset[str] = frozenset()  # `-p <pw>`
    user_password: frozenset[str] = frozenset()  # `-u user:<pw>`
    separator: str = ":"
    pass_prefix: bool = False  # openssl `pass:<pw>`
    slash_login: bool = False  # sqlplus `user/<pw>@db`
    needs: str | None = None  # a subcommand that must come first (`docker login`)


def _flags(*names: str) -> frozenset[str]:
    return frozenset(names)


_MYSQL = _Program(attached=_flags("-p"))
_REGISTRY_LOGIN = _Program(attached=_flags("-p"), spaced=_flags("-p"), needs="login")
_SQLCMD = _Program(attached=_flags("-P"), spaced=_flags("-P"))
_REDIS = _Program(spaced=_flags("-a"))
_MONGO = _Program(spaced=_flags("-p"))
_LDAP = _Program(spaced=_flags("-w"))
_CURL = _Program(user_password=_flags("-u", "--user", "-U", "--proxy-user"))
_HTTPIE = _Program(user_password=_flags("-a", "--auth"))
_FAMILIES: tuple[tuple[str, _Program], ...] = (
    (
        "mysql mysqldump mysqladmin mysqlimport mysqlshow mysqlcheck mysqlpump mysqlsh mariadb mariadb-dump "
        "mariadb-admin mariadb-import",
        _MYSQL,
    ),
    ("docker podman nerdctl buildah helm oras", _REGISTRY_LOGIN),
    ("sqlcmd bcp osql isql", _SQLCMD),
    ("redis-cli valkey-cli keydb-cli", _REDIS),
    ("mongo mongosh mongodump mongorestore mongoexport mongoimport mongostat mongotop", _MONGO),
    ("ldapsearch ldapmodify ldapadd ldapdelete ldapwhoami ldappasswd", _LDAP),
    ("sshpass", _Program(attached=_flags("-p"), spaced=_flags("-p"))),
    ("curl", _CURL),
    ("http https xh", _HTTPIE),
    ("smbclient", _Program(user_password=_flags("-U", "--user"), separator="%")),
    ("openssl", _Program(pass_prefix=True)),
    ("az", _Program(spaced=_flags("-p"))),
    ("sqlplus sqlldr expdp impdp rman", _Program(slash_login=True)),
)
_SLASH_LOGIN_PROGRAMS = ("sqlplus", "sqlldr", "expdp", "impdp", "rman")
_PROGRAMS: dict[str, _Program] = {name: program for names, program in _FAMILIES for name in names.split()}
_PROGRAM_GATE = re.compile(
    r"(?<![\w.-])(?:mysql\w{0,6}|mariadb(?:-\w{1,8})?|docker|podman|nerdctl|buildah|helm|oras|sqlcmd|bcp|osql|isql"
    r"|redis-cli|valkey-cli|keydb-cli|mongo\w{0,8}|ldap\w{2,8}|sshpass|curl|https?(?=[ '\"])|xh|smbclient|openssl|az"
    r"|sqlplus|sqlldr|expdp|impdp|rman)"
    r"(?:\.exe)?(?![\w-])"
)
_TOKEN = re.compile(r"'(?P<sq>[^'\n]{0,512})'|\"(?P<dq>[^\"\n]{0,512})\"|(?P<bare>[^\s'\"()`]{1,512})")
# The repr of an argv list or tuple: quoted items separated by commas.
_ITEM = r"(?:'[^'\n]{0,512}'|\"[^\"\n]{0,512}\")"
_ARGV = re.compile(rf"[\[(][ \t]{{0,4}}{_ITEM}(?:[ \t]{{0,4}},[ \t]{{0,4}}{_ITEM}){{1,200}}")
_ARGV_ITEM = re.compile(r"'(?P<sq>[^'\n]{0,512})'|\"(?P<dq>[^\"\n]{0,512})\"")
_ENDS = frozenset({";", "&&", "||", "|"})
_MAX_TOKENS = 64


class _Token:
    __slots__ = ("end", "start", "value", "value_start")

    def __init__(self, match: re.Match[str]) -> None:
        group = match.lastgroup or "bare"
        self.start, self.end = match.start(), match.end()
        self.value = match.group(group)
        self.value_start = match.start(group)


def _shell_tokens(text: str, starts: set[int]) -> list[_Token]:
    """Shell-like tokens; a quoted token holding a program (`sh -c "redis-cli -a ..."`) is split in turn."""
    tokens: list[_Token] = []
    for match in _TOKEN.finditer(text):
        token = _Token(match)
        inner_end = token.value_start + len(token.value)
        if match.lastgroup != "bare" and any(token.value_start <= start < inner_end for start in starts):
            tokens.extend(_Token(inner) for inner in _TOKEN.finditer(text, token.value_start, inner_end))
        else:
            tokens.append(token)
    return tokens


def _program_name(value: str) -> str:
    name = value.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    return name[:-4] if name.endswith(".exe") else name


class CommandLineDetector:
    """Passwords given as command-line options, in shell strings and argv reprs."""

    name = "command_line"

    def __init__(self, classifier: KeyClassifier) -> None:
        self._judge = classifier.judge

    def find(self, text: str) -> Iterable[Match]:
        options = " -" in text or "'-" in text or '"-' in text or "`-" in text
        if not options and ("/" not in text or not any(name in text for name in _SLASH_LOGIN_PROGRAMS)):
            return ()  # no option at all, and no Oracle `user/password@db` login
        return list(self._find(text))

    def _find(self, text: str) -> Iterator[Match]:
        starts = {match.start() for match in _PROGRAM_GATE.finditer(text)}
        argv = "', '" in text or '", "' in text or "','" in text
        if not starts and not argv:
            return
        lists = list(_ARGV.finditer(text)) if argv else []
        for match in lists:
            tokens = [_Token(item) for item in _ARGV_ITEM.finditer(text, match.start(), match.end())]
            yield from self._programs(tokens, starts)
            yield from self._long_options(tokens)
        if starts:
            tokens = _shell_tokens(text, starts)
            if lists:
                inside = [(match.start(), match.end()) for match in lists]
                tokens = [token for token in tokens if not any(a <= token.start < b for a, b in inside)]
            yield from self._programs(tokens, starts)

    def _programs(self, tokens: list[_Token], starts: set[int]) -> Iterator[Match]:
        for index, token in enumerate(tokens):
            name = _program_name(token.value)
            program = _PROGRAMS.get(name)
            if program is not None and token.value_start + token.value.rfind(name) in starts:
                yield from self._options(program, tokens, index + 1)

    def _options(self, program: _Program, tokens: list[_Token], first: int) -> Iterator[Match]:
        ready = program.needs is None
        last = min(len(tokens), first + _MAX_TOKENS)
        for index in range(first, last):
            token = tokens[index]
            value = token.value
            if value in _ENDS:
                return
            if not ready:
                ready = value == program.needs
                continue
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if value in program.spaced or value in program.user_password or value in program.attached:
                if following is None or following.value.startswith("-"):
                    continue
                if value in program.attached and following.start != token.end and value not in program.spaced:
                    continue  # `mysql -p db`: `-p` alone prompts, `db` is the database
                if value in program.user_password:
                    yield from _after_separator(following, program.separator)
                else:
                    yield from _whole(following)
                continue
            if value[:2] in program.attached and len(value) > 2 and not value.startswith("--"):
                yield from _part(token, 2)
            elif value.startswith("--") and "=" in value and value.split("=", 1)[0] in program.user_password:
                yield from _after_separator(token, program.separator, value.index("=") + 1)
            elif len(value) > 2 and value[:2] in program.user_password and not value.startswith("--"):
                yield from _after_separator(token, program.separator, 2)
            elif program.pass_prefix and value.startswith("pass:"):
                yield from _part(token, 5)
            elif program.slash_login and "/" in value and not value.startswith(("/", "@", "-")):
                yield from _slash_login(token)

    def _long_options(self, tokens: list[_Token]) -> Iterator[Match]:
        for index, token in enumerate(tokens[:-1]):
            value = token.value
            if not value.startswith("--") or "=" in value:
                continue
            category, holds = self._judge(value[2:])
            following = tokens[index + 1]
            if category is None or not holds or following.value.startswith("-"):
                continue
            yield from _whole(following)


def _part(token: _Token, offset: int) -> Iterator[Match]:
    secret = token.value[offset:]
    if secret and not is_placeholder(secret):
        yield Match(token.value_start + offset, token.value_start + len(token.value), "password")


def _whole(token: _Token) -> Iterator[Match]:
    yield from _part(token, 0)


def _slash_login(token: _Token) -> Iterator[Match]:
    """`user/<pw>@connect` or `user/<pw>`: the part between the slash and the `@`."""
    value = token.value
    slash = value.index("/")
    at = value.find("@", slash + 1)
    end = at if at >= 0 else len(value)
    secret = value[slash + 1 : end]
    if secret and not is_placeholder(secret):
        yield Match(token.value_start + slash + 1, token.value_start + end, "password")


def _after_separator(token: _Token, separator: str, offset: int = 0) -> Iterator[Match]:
    position = token.value.find(separator, offset)
    if position >= 0:
        yield from _part(token, position + 1)


# -------------------------------------------------------------------------------------- datastore commands

_QUOTED = r"N?'(?P<sq>(?:[^'\\\n]|\\.|''){1,512})'|\"(?P<dq>[^\"\n]{1,512})\""
_QUOTED2 = _QUOTED.replace("?P<sq>", "?P<sq2>").replace("?P<dq>", "?P<dq2>")
_SQL_AUTH = re.compile(
    rf"""
    \b(?i:IDENTIFIED\s+(?:WITH\s+[\w$'"]{{1,64}}\s+)?BY(?:\s+PASSWORD)?)\s+(?:{_QUOTED}|(?P<bare>[^\s;'",)]{{1,512}}))
  | \b(?i:SET\s+PASSWORD(?:\s+FOR\s+[^=\n]{{1,200}}?)?\s*=\s*(?:PASSWORD\s*\(\s*)?)(?:{_QUOTED2})
  | \b(?i:(?:ENCRYPTED\s+|UNENCRYPTED\s+)?PASSWORD)\s*(?:=\s*|\(\s*)?N?'(?P<sq3>(?:[^'\\\n]|\\.|''){{1,512}})'
    """,
    re.VERBOSE,
)
_REDIS_STATEMENT = re.compile(
    r"""
    ^\s*(?i:AUTH)\s+(?P<first>\S{1,512})(?:\s+(?P<second>\S{1,512}))?\s*$
  | ^\s*(?i:HELLO)\s+\d\s+(?i:AUTH)\s+\S{1,512}\s+(?P<hello>\S{1,512})
  | (?i:CONFIG\s+SET)\s+"?(?i:requirepass|masterauth)"?\s+(?P<config>"[^"\n]{1,512}"|\S{1,512})
  | \s(?i:AUTH2)\s+\S{1,512}\s+(?P<auth2>\S{1,512})
  | ^\s*(?i:MIGRATE)\s[^\n]{0,1024}?\s(?i:AUTH)\s+(?P<migrate>\S{1,512})
    """,
    re.VERBOSE,
)
_REDIS_TEXT = re.compile(
    r"""
    (?<![\w-])AUTH[ \t]+(?P<first>[^\s"']{1,512})(?:[ \t]+(?P<second>[^\s"']{1,512}))?
  | "(?i:auth)"[ \t]+"(?P<qfirst>[^"\n]{0,512})"(?:[ \t]+"(?P<qsecond>[^"\n]{0,512})")?
  | (?<![\w-])MIGRATE[ \t][^\n]{0,1024}?[ \t]AUTH[ \t]+(?P<migrate>[^\s"']{1,512})
  | (?<![\w-])HELLO[ \t]+\d[ \t]+AUTH[ \t]+\S{1,512}[ \t]+(?P<hello>[^\s"']{1,512})
  | CONFIG[ \t]+SET[ \t]+(?i:requirepass|masterauth)[ \t]+(?P<config>[^\s"']{1,512})
  | "(?i:config)"[ \t]+"(?i:set)"[ \t]+"(?i:requirepass|masterauth)"[ \t]+"(?P<qconfig>[^"\n]{1,512})"
    """,
    re.VERBOSE,
)
_ACL_PASSWORD = re.compile(r"(?i:ACL\s+SETUSER)\s[^\n]{0,2048}")
_ACL_TOKEN = re.compile(r"(?<=\s)[><](?P<pw>[^\s\"']{1,512})")


def _status_word(value: str) -> bool:
    """`AUTH OK`, `AUTH failed:`: a word reporting an outcome, not a password (free text only)."""
    return not could_be_credential(value.rstrip(":,;.!)"))


class DatastoreAuthDetector:
    """Passwords in Redis authentication commands and SQL user-management statements."""

    name = "datastore_auth"

    def find(self, text: str, lowered: str | None = None, statement: bool = False) -> Iterable[Match]:
        """`lowered`: the text in lower case, same length (computed when not given)."""
        if lowered is None:
            lowered = text.lower()
        redis = "auth" in lowered or "requirepass" in lowered or "setuser" in lowered
        sql = "identified" in lowered or ("password" in lowered and ("'" in text or '"' in text))
        if not redis and not sql:
            return ()
        return list(self._find(text, statement, redis, sql))

    def _find(self, text: str, statement: bool, redis: bool, sql: bool) -> Iterator[Match]:
        if redis:
            yield from self._redis(text, statement)
        if sql:
            for match in _SQL_AUTH.finditer(text):
                for group in ("sq", "dq", "bare", "sq2", "dq2", "sq3"):
                    if match.group(group) is not None:
                        if group != "bare" or statement or could_be_credential(match.group(group)):
                            yield from _group_value(match, group)  # free text: `identified by email` is prose
                        break

    def _redis(self, text: str, statement: bool) -> Iterator[Match]:
        if statement:
            for match in _REDIS_STATEMENT.finditer(text):
                group = "second" if match.group("second") is not None else None
                for name in (group, "first", "hello", "config", "auth2", "migrate"):
                    if name is not None and match.group(name) is not None:
                        yield from _group_value(match, name, unquote=True)
                        break
        else:
            for match in _REDIS_TEXT.finditer(text):
                yield from self._redis_text(match)
        for block in _ACL_PASSWORD.finditer(text):
            for match in _ACL_TOKEN.finditer(text, block.start(), block.end()):
                yield from _group_value(match, "pw")

    @staticmethod
    def _redis_text(match: re.Match[str]) -> Iterator[Match]:
        for single in ("hello", "config", "qconfig", "migrate"):
            if match.group(single) is not None:
                yield from _group_value(match, single)
                return
        if match.group("qfirst") is not None:
            yield from _group_value(match, "qsecond" if match.group("qsecond") is not None else "qfirst")
            return
        first, second = match.group("first"), match.group("second")
        if second is not None and not _status_word(second):
            yield from _group_value(match, "second")
        elif not _status_word(first):
            yield from _group_value(match, "first")


def _group_value(match: re.Match[str], group: str, unquote: bool = False) -> Iterator[Match]:
    start, end = match.start(group), match.end(group)
    value = match.group(group)
    if unquote and len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        start, end, value = start + 1, end - 1, value[1:-1]
    if value and not is_placeholder(value):
        yield Match(start, end, "password")
