"""Generated corpus cases: templates filled with fresh fake secrets from a fixed seed.

Nothing secret-shaped is written literally in the repository: tokens, passwords, cards and phone numbers are
built at run time.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable, Iterator

from tests.redaction.corpus import Case, handwritten
from tests.redaction.secrets_factory import ALNUM, VALUE_CATEGORIES, iban, luhn_complete, make, ssn

SYMBOLS = "#%+!_.@^"


def password(rng: random.Random) -> str:
    """A password with letters, digits and a symbol that never needs shell quoting."""
    size = rng.randint(9, 16)
    body = [rng.choice(ALNUM) for _ in range(size - 3)]
    body += [rng.choice(string.digits), rng.choice(string.ascii_uppercase), rng.choice("#%+!_.^")]
    rng.shuffle(body)
    if not body[0].isalnum():
        body[0] = rng.choice(string.ascii_letters)
    return "".join(body)


def token(rng: random.Random, size: int | None = None) -> str:
    size = size or rng.randint(24, 40)
    while True:
        value = "".join(rng.choice(ALNUM) for _ in range(size))
        if any(c.isdigit() for c in value) and any(c.isupper() for c in value) and any(c.islower() for c in value):
            return value


def _repeat(count: int, build: Callable[[random.Random], Case], rng: random.Random) -> Iterator[Case]:
    for _ in range(count):
        yield build(rng)


# ------------------------------------------------------------------------------------- 1. command lines

CLI_TEMPLATES = (
    ("mysql -h db.internal -u root -p{pw} orders", "mysql -h db.internal -u root -p{m} orders"),
    (
        "mysqldump --user=backup --password={pw} --all-databases",
        "mysqldump --user=backup --password={m} --all-databases",
    ),
    ("mysqladmin -uroot -p{pw} status", "mysqladmin -uroot -p{m} status"),
    ("mariadb -u app -p{pw} -e 'select 1'", "mariadb -u app -p{m} -e 'select 1'"),
    ("docker login -u ci-bot -p {pw} registry.example.com", "docker login -u ci-bot -p {m} registry.example.com"),
    ("docker login --username ci --password {pw} ghcr.io", "docker login --username ci --password {m} ghcr.io"),
    ("podman login -u bot -p {pw} quay.io", "podman login -u bot -p {m} quay.io"),
    (
        "helm registry login registry.example.com -u bot -p {pw}",
        "helm registry login registry.example.com -u bot -p {m}",
    ),
    ("redis-cli -h cache -p 6379 -a {pw} PING", "redis-cli -h cache -p 6379 -a {m} PING"),
    ("redis-cli --pass {pw} -n 2 INFO", "redis-cli --pass {m} -n 2 INFO"),
    ("curl -u deploy:{pw} https://nexus.internal/repository/", "curl -u deploy:{m} https://nexus.internal/repository/"),
    (
        "curl -sS --user admin:{pw} -X POST https://ci.internal/job/build",
        "curl -sS --user admin:{m} -X POST https://ci.internal/job/build",
    ),
    ("curl --user=admin:{pw} https://ci.internal/", "curl --user=admin:{m} https://ci.internal/"),
    ("sshpass -p {pw} ssh deploy@10.0.0.5", "sshpass -p {m} ssh deploy@10.0.0.5"),
    ('sqlcmd -S db -U sa -P {pw} -Q "SELECT 1"', 'sqlcmd -S db -U sa -P {m} -Q "SELECT 1"'),
    ("bcp orders out orders.dat -S db -U sa -P{pw} -c", "bcp orders out orders.dat -S db -U sa -P{m} -c"),
    (
        "mongosh --username app --password {pw} --authenticationDatabase admin",
        "mongosh --username app --password {m} --authenticationDatabase admin",
    ),
    ("mongodump -u app -p {pw} --db shop", "mongodump -u app -p {m} --db shop"),
    ("PGPASSWORD={pw} pg_dump -h db -U app app", "PGPASSWORD={m} pg_dump -h db -U app app"),
    (
        "openssl pkcs12 -export -passout pass:{pw} -out cert.p12",
        "openssl pkcs12 -export -passout pass:{m} -out cert.p12",
    ),
    (
        "ldapsearch -x -D cn=admin,dc=example,dc=org -w {pw} -b dc=example,dc=org",
        "ldapsearch -x -D cn=admin,dc=example,dc=org -w {m} -b dc=example,dc=org",
    ),
    ("smbclient //fs/share -U alice%{pw}", "smbclient //fs/share -U alice%{m}"),
    (
        "wget --http-user=bob --http-password={pw} https://files.internal/a.tgz",
        "wget --http-user=bob --http-password={m} https://files.internal/a.tgz",
    ),
    ("http -a bob:{pw} GET https://api.internal/me", "http -a bob:{m} GET https://api.internal/me"),
    ("/usr/bin/mysql --host=db -uapp -p{pw} shop < dump.sql", "/usr/bin/mysql --host=db -uapp -p{m} shop < dump.sql"),
    ("az login -u ops -p {pw} --tenant example", "az login -u ops -p {m} --tenant example"),
)
ARGV_TEMPLATES = (
    ["mysql", "-uroot", "-p{pw}", "orders"],
    ["docker", "login", "-u", "bot", "-p", "{pw}", "registry.example.com"],
    ["redis-cli", "-a", "{pw}", "ping"],
    ["curl", "-u", "admin:{pw}", "https://ci.internal/"],
    ["sqlcmd", "-U", "sa", "-P", "{pw}", "-Q", "SELECT 1"],
    ["sshpass", "-p", "{pw}", "ssh", "deploy@host"],
    ["mysqldump", "--password={pw}", "shop"],
    ["mongosh", "--password", "{pw}", "mongodb://db/shop"],
    ["/usr/local/bin/redis-cli", "-h", "cache", "--pass", "{pw}"],
)


def cli_cases(rng: random.Random) -> Iterator[Case]:
    marker = "[REDACTED:password]"
    for template, expected in CLI_TEMPLATES:
        for wrap in ("{}", "subprocess failed: {} (exit status 1)", "running `{}`"):
            pw = password(rng)
            text = wrap.format(template.format(pw=pw))
            yield Case("cli_credential", True, text, None, (pw,), wrap.format(expected.format(m=marker)))
    for argv in ARGV_TEMPLATES:
        for wrap in (
            "Command '{}' returned non-zero exit status 1.",
            "args={}",
            "{}",
        ):
            pw = password(rng)
            filled = [part.format(pw=pw) for part in argv]
            yield Case("cli_credential", True, wrap.format(repr(filled)), None, (pw,))
            yield Case("cli_credential", True, wrap.format(repr(tuple(filled))), "process.command_line", (pw,))
    for argv in ARGV_TEMPLATES[:4]:
        pw = password(rng)
        yield Case("cli_credential", True, " ".join(part.format(pw=pw) for part in argv), "process.command_line", (pw,))


CLI_NEGATIVES = (
    "docker run -p 8080:80 nginx:1.25",
    "ssh -p 2222 deploy@10.0.0.5",
    "psql -h db -p 5432 -U app -W shop",
    "mkdir -p /var/lib/app/data",
    "redis-cli -h cache -p 6379 PING",
    "docker login -u bot --password-stdin ghcr.io",
    "mysql -u root -p orders",
    "curl -u bob https://api.internal/me",
    "docker run -u 1000:1000 alpine id",
    "docker run --user app:app --rm app:1.4.2",
    "tar -xpf backup.tar -C /srv",
    "git log -p -5 --stat",
    "pip install -U requests==2.32.3",
    "ls -la /tmp",
    "grep -P '\\d+' access.log",
    "kubectl port-forward svc/db 5432:5432",
    "rsync -avz -e 'ssh -p 2222' src/ deploy@host:dst/",
    "['ssh', '-p', '2222', 'deploy@host']",
    "['mkdir', '-p', '/tmp/x']",
    "['psql', '-h', 'db', '-p', '5432', '-U', 'app']",
    "mysql -P 3306 -h db -u app --ssl-mode=REQUIRED",
    "gunicorn -w 4 -b 0.0.0.0:8000 app:app",
    "uvicorn app:app --host 0.0.0.0 --port 8000",
    "python -m pytest -p no:cacheprovider -q",
    "curl -X POST -d '{\"a\":1}' -H 'Content-Type: application/json' https://api.internal/x",
    "docker build -t app:1.2.3 --build-arg VERSION=1.2.3 .",
    "celery -A proj worker -P gevent -c 100",
    "docker compose -p shop up -d",
    "mysqldump --single-transaction --routines shop",
    "redis-cli --scan --pattern 'session:*'",
    'sqlcmd -S db -E -Q "SELECT name FROM sys.databases"',
    "Command '['git', 'push', 'origin', 'main']' returned non-zero exit status 128.",
    "openssl req -new -key server.key -out server.csr -subj /CN=api.internal",
    "helm upgrade --install shop ./chart -f values.yaml --set image.tag=1.4.2",
    "docker login ghcr.io -u bot --password-stdin < token.txt",
    "ldapsearch -x -H ldap://ldap.internal -b dc=example,dc=org uid=bob",
)


# --------------------------------------------------------------------------------------------- 2. phones


def nanp(rng: random.Random) -> tuple[str, ...]:
    area = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
    exchange = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
    line = f"{rng.randint(0, 9999):04d}"
    return (
        f"+1 {area} {exchange} {line}",
        f"+1-{area}-{exchange}-{line}",
        f"+1 ({area}) {exchange}-{line}",
        f"+1{area}{exchange}{line}",
        f"({area}) {exchange}-{line}",
        f"{area}-{exchange}-{line}",
        f"{area}.{exchange}.{line}",
        f"1-{area}-{exchange}-{line}",
    )


def international(rng: random.Random) -> tuple[str, ...]:
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731
    return (
        f"+44 20 {d(4)} {d(4)}",
        f"+44 7700 {d(6)}",
        f"+44 (0)20 {d(4)} {d(4)}",
        f"020 {d(4)} {d(4)}",
        f"07700 {d(6)}",
        f"+49 30 {d(7)}",
        f"+49 151 {d(8)}",
        f"030 {d(8)}",
        f"0151 {d(8)}",
        f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
        f"06 {d(2)} {d(2)} {d(2)} {d(2)}",
        f"+91 98{d(3)} {d(5)}",
        f"+81 3-{d(4)}-{d(4)}",
        f"090-{d(4)}-{d(4)}",
        f"+61 2 {d(4)} {d(4)}",
        f"0412 {d(3)} {d(3)}",
        f"+34 6{d(2)} {d(3)} {d(3)}",
        f"+39 3{d(2)} {d(3)} {d(4)}",
        f"+31 6 {d(8)}",
        f"+55 11 9{d(4)}-{d(4)}",
    )


PHONE_CONTEXTS: tuple[tuple[str | None, str], ...] = (
    (None, "call me at {p}"),
    (None, "Customer phone {p} updated"),
    (None, "SMS delivery to {p} failed: carrier rejected"),
    (None, "contact: {p} (mobile)"),
    ("http.request.body", '{{"name": "Bob", "phone": "{p}"}}'),
    ("http.response.body", '{{"customer": {{"mobile": "{p}", "tier": "gold"}}}}'),
    ("db.statement", "INSERT INTO customers (name, phone) VALUES ('Bob', '{p}')"),
    ("db.statement", "UPDATE users SET phone = '{p}' WHERE id = 42"),
    ("db.query.text", "SELECT id FROM users WHERE mobile = '{p}'"),
    ("user.phone", "{p}"),
    ("customer.phone_number", "{p}"),
    ("contact.mobile", "{p}"),
    (None, "phone={p} country=US"),
)


def phone_cases(rng: random.Random) -> Iterator[Case]:
    numbers = list(nanp(rng)) + list(international(rng)) + list(nanp(rng)) + list(international(rng))
    for index, number in enumerate(numbers):
        key, template = PHONE_CONTEXTS[index % len(PHONE_CONTEXTS)]
        yield Case("phone", True, template.format(p=number), key, (number,))
    digits = "".join(rng.choice(string.digits) for _ in range(9))
    yield Case("phone", True, "1" + "4" + digits, "msisdn", ("14" + digits,))
    yield Case("phone", True, f"SMS sent to +14{digits}", None, (f"+14{digits}",))


PHONE_NEGATIVES: tuple[tuple[str | None, str], ...] = (
    (None, "deployed 2024-01-15 10:30:45 UTC"),
    (None, "report for 15.01.2024 generated"),
    (None, "due 01/15/2024"),
    (None, "at 2024-01-15T10:30:00.123456Z"),
    (None, "release v2.14.0 (build 20240115.3)"),
    (None, "Python 3.11.7 on linux"),
    (None, "order ORD-2024-000123 shipped"),
    (None, "order #100234567 paid"),
    (None, "invoice 2024-000123-07 issued"),
    (None, "request took 1234 ms (p99 5678 ms)"),
    (None, "elapsed 00:01:23.456"),
    (None, "user_id=1234567890 logged in"),
    (None, "epoch 1718035200 and 1718035200123"),
    (None, "client 10.0.12.34 via 192.168.100.200"),
    (None, "HTTP 200 in 35 ms, 1048576 bytes"),
    (None, "ISBN 978-3-16-148410-0"),
    (None, "version 2.0.0-rc.1+build.5"),
    (None, "timezone UTC+05:30 (+0530)"),
    (None, "location -33.8688, 151.2093"),
    (None, "total $1,234,567.89"),
    (None, "NodePort range 30000-32767"),
    (None, "MAC 00:1A:2B:3C:4D:5E"),
    (None, "cron 0 12 * * 1"),
    (None, "build 2023.10.1 of 2023-10-01"),
    (None, "ticket JIRA-1234 and PR #5678"),
    (None, "account 000123456 archived"),
    (None, "retrying in 30 s (attempt 3 of 10)"),
    (None, "span 00f067aa0ba902b7 trace 4bf92f3577b34da6a3ce929d0e0e4736"),
    (None, "listening on 0.0.0.0:8000"),
    (None, "heap 512 MiB, gc 12 collections, 3456 objects"),
    (None, "range 100-200-300"),
    (None, "coordinates 48.8566 2.3522"),
    (None, "SKU 400-123-9876-XL restocked"),
    ("order.id", "100234567"),
    ("http.response.body", '{"order_id": 100234567, "created": "2024-01-15", "total": 1234.5}'),
    ("db.statement", "SELECT * FROM orders WHERE created_at > '2024-01-15' AND id = 100234567"),
    ("phone_verified", "true"),
    ("user.phone_country_code", "+1"),
    ("phone.type", "mobile"),
    ("telemetry.sdk.version", "1.45.1"),
    ("process.pid", "4155552"),
    (None, "duration_ms=415555 size=2671"),
)


# ----------------------------------------------------------------------------------------- 3. prose tokens

PROSE_TEMPLATES = (
    "my api key is {t}",
    "use token {t} for the staging cluster",
    "the new password is {p}",
    "Please set the password to {p} and restart",
    "login with password {p} failed",
    "apikey {t} was rejected by upstream",
    "Hi team, my key is {t} if you need it",
    "temporary secret is {t}",
    "try the token `{t}` instead",
    "passphrase is '{p}'",
    "the credential is {t}",
    "Use this token: {t}",
    "your password has been reset to {p}",
    "I rotated it, the token is now {t}",
)


def prose_cases(rng: random.Random) -> Iterator[Case]:
    for template in PROSE_TEMPLATES:
        for _ in range(3):
            t, p = token(rng), password(rng)
            text = template.format(t=t, p=p)
            secret = t if "{t}" in template else p
            yield Case("prose_token", True, text, rng.choice([None, "exception.message", "log.body"]), (secret,))
    for _ in range(4):
        code = "".join(rng.choice(string.digits) for _ in range(6))
        yield Case("prose_token", True, f"Your verification code is {code}", None, (code,))
        yield Case("prose_token", True, f"one-time passcode {code} sent", None, (code,))


PROSE_NEGATIVES = (
    "the token is invalid",
    "token expired, refreshing",
    "token count is 128",
    "password is too short (min 12 characters)",
    "password must contain 12 characters",
    "the key is missing",
    "cache key is user:123:profile",
    "idempotency key is 3f2b8c1e-9d4a-4b7e-a1c2-5e6f7a8b9c0d",
    "primary key is order_id",
    "the S3 key is uploads/2024/05/report.pdf",
    "partition key tenant-42",
    "sort key created_at",
    "token budget 4096 exceeded",
    "max tokens 2048",
    "password reset requested for user 42",
    "key pressed: Enter",
    "API key not found",
    "token refreshed successfully",
    "the password was changed 3 days ago",
    "the passphrase is required",
    "use token-based auth",
    "token type is Bearer",
    "key is a required field",
    "password hashing with argon2id",
    "token endpoint returned 200",
    "foreign key constraint fk_orders_user failed",
    "routing key orders.created",
    "license key validation OK",
    "the key was rotated at 2024-05-01T10:00:00Z",
    "secret santa assignment done",
    "password policy updated to v2",
    "the token is valid for 3600 seconds",
    "error code is 500",
    "status code 404 for /api/v1/orders",
    "key orders:v2:123 evicted",
    "session key rotated",
    "the key is stored in Vault at secret/data/shop",
    "use key alias alias/shop-prod",
    "token limit 8192 reached for model gpt-4o",
    "password field left blank",
)


# ------------------------------------------------------------------------------------ 4. one-time URLs

URL_ONE_TIME = (
    ("https://app.example.com/callback?code={c}&state={s}", "https://app.example.com/callback?code=REDACTED&state={s}"),
    (
        "https://auth.example.com/oauth/token?grant_type=authorization_code&code={c}&code_verifier={v}&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb",
        "https://auth.example.com/oauth/token?grant_type=authorization_code&code=REDACTED&code_verifier=REDACTED&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb",
    ),
    (
        "https://app.example.com/login/verify?otp={o}&next=/home",
        "https://app.example.com/login/verify?otp=REDACTED&next=/home",
    ),
    (
        "https://app.example.com/reset-password?reset_token={c}",
        "https://app.example.com/reset-password?reset_token=REDACTED",
    ),
    (
        "https://app.example.com/auth/magic?magic_token={c}&redirect=/dash",
        "https://app.example.com/auth/magic?magic_token=REDACTED&redirect=/dash",
    ),
    (
        "https://app.example.com/verify-email?verification_token={c}&lang=en",
        "https://app.example.com/verify-email?verification_token=REDACTED&lang=en",
    ),
    (
        "https://app.example.com/users/confirm?confirmation_token={c}",
        "https://app.example.com/users/confirm?confirmation_token=REDACTED",
    ),
    (
        "https://app.example.com/invite/accept?invite_token={c}&team=42",
        "https://app.example.com/invite/accept?invite_token=REDACTED&team=42",
    ),
    (
        "https://sso.example.com/cas/login?service=https%3A%2F%2Fapp&ticket=ST-{o}-{c}",
        "https://sso.example.com/cas/login?service=https%3A%2F%2Fapp&ticket=REDACTED",
    ),
    ("https://app.example.com/2fa?mfa_code={o}&remember=1", "https://app.example.com/2fa?mfa_code=REDACTED&remember=1"),
    ("https://app.example.com/cb#code={c}&state={s}", "https://app.example.com/cb#code=REDACTED&state={s}"),
    (
        "https://app.example.com/magic-link?token={c}&email_hint=b",
        "https://app.example.com/magic-link?token=REDACTED&email_hint=b",
    ),
    (
        "https://app.example.com/password/reset?key={c}&login=bob",
        "https://app.example.com/password/reset?key=REDACTED&login=bob",
    ),
    ("https://app.example.com/device?user_code={o}", "https://app.example.com/device?user_code=REDACTED"),
    (
        "https://app.example.com/activate?activation_code={c}",
        "https://app.example.com/activate?activation_code=REDACTED",
    ),
)


def url_cases(rng: random.Random) -> Iterator[Case]:
    for template, expected in URL_ONE_TIME:
        for key in ("url.full", "http.url", None):
            c, s, v = token(rng, 32), token(rng, 16), token(rng, 43)
            o = "".join(rng.choice(string.digits) for _ in range(6))
            values = {"c": c, "s": s, "v": v, "o": o}
            secrets = tuple(values[name] for name in "cvo" if "{" + name + "}" in template)
            url = template.format(**values)
            want = expected.format(**values)
            if key is None:
                yield Case("url_one_time", True, f"GET {url} 302", None, secrets, f"GET {want} 302")
            else:
                yield Case("url_one_time", True, url, key, secrets, want)
    c, s = token(rng, 32), token(rng, 16)
    yield Case("url_one_time", True, f"code={c}&state={s}", "url.query", (c,), f"code=REDACTED&state={s}")
    yield Case(
        "url_one_time", True, f"/callback?code={c}&state={s}", "http.target", (c,), f"/callback?code=REDACTED&state={s}"
    )


URL_NEGATIVES = (
    "https://app.example.com/callback?state={s}&page=2",
    "https://auth.example.com/authorize?response_type=code&client_id=web&state={s}&code_challenge={v}&code_challenge_method=S256",
    "https://api.example.com/v1/orders?page=3&per_page=50&cursor={s}",
    "https://api.example.com/v1/items?next_page_token={s}&limit=100",
    "https://app.example.com/callback?error=access_denied&error_description=User+denied&state={s}",
    "https://shop.example.com/checkout?country_code=US&zip_code=90210&promo_code=SPRING24",
    "https://api.example.com/report?status_code=200&error_code=E123&lang=en",
    "https://app.example.com/cb?session_state={s}&iss=https%3A%2F%2Fsso",
    "https://app.example.com/search?q=reset+password+help&sort=asc",
    "https://app.example.com/docs/otp-setup?tab=code",
    "https://app.example.com/invite?team=42&role=admin",
    "https://api.example.com/v1/codes?type=promo&page=1",
    "https://app.example.com/oauth/authorize?scope=openid+profile&nonce=n-0S6_WzA2Mj&state={s}",
)


def url_negative_cases(rng: random.Random) -> Iterator[Case]:
    for template in URL_NEGATIVES:
        for key in ("url.full", None):
            value = template.format(s=token(rng, 16), v=token(rng, 43))
            yield Case("url_one_time", False, value if key else f"GET {value} 200", key)


# ------------------------------------------------------------------------------ 5. datastore auth commands

DATASTORE = (
    ("db.statement", "AUTH {p}", "AUTH {m}"),
    ("db.statement", "AUTH default {p}", "AUTH default {m}"),
    ("db.statement", "auth {p}", "auth {m}"),
    ("db.query.text", "CONFIG SET requirepass {p}", "CONFIG SET requirepass {m}"),
    ("db.statement", "CONFIG SET masterauth {p}", "CONFIG SET masterauth {m}"),
    ("db.statement", "HELLO 3 AUTH app {p}", "HELLO 3 AUTH app {m}"),
    ("db.statement", "ACL SETUSER worker on >{p} ~jobs:* +@all", "ACL SETUSER worker on >{m} ~jobs:* +@all"),
    ("db.statement", "CREATE USER 'app'@'%' IDENTIFIED BY '{p}'", "CREATE USER 'app'@'%' IDENTIFIED BY '{m}'"),
    ("db.statement", "ALTER USER app IDENTIFIED BY {p}", "ALTER USER app IDENTIFIED BY {m}"),
    (
        "db.statement",
        "CREATE USER app IDENTIFIED WITH mysql_native_password BY '{p}'",
        "CREATE USER app IDENTIFIED WITH mysql_native_password BY '{m}'",
    ),
    ("db.statement", "ALTER USER app WITH PASSWORD '{p}'", "ALTER USER app WITH PASSWORD '{m}'"),
    ("db.query.text", "CREATE USER app PASSWORD '{p}'", "CREATE USER app PASSWORD '{m}'"),
    (
        "db.statement",
        "CREATE ROLE app WITH LOGIN ENCRYPTED PASSWORD '{p}'",
        "CREATE ROLE app WITH LOGIN ENCRYPTED PASSWORD '{m}'",
    ),
    ("db.statement", "ALTER LOGIN sa WITH PASSWORD = N'{p}'", "ALTER LOGIN sa WITH PASSWORD = N'{m}'"),
    (
        "db.statement",
        "CREATE LOGIN app WITH PASSWORD = '{p}', CHECK_POLICY = OFF",
        "CREATE LOGIN app WITH PASSWORD = '{m}', CHECK_POLICY = OFF",
    ),
    ("db.statement", "SET PASSWORD FOR 'app'@'%' = '{p}'", "SET PASSWORD FOR 'app'@'%' = '{m}'"),
    (
        "db.statement",
        "CREATE ROLE app WITH PASSWORD = '{p}' AND LOGIN = true",
        "CREATE ROLE app WITH PASSWORD = '{m}' AND LOGIN = true",
    ),
    ("db.statement", "ALTER USER app SET PASSWORD '{p}'", "ALTER USER app SET PASSWORD '{m}'"),
    (None, "redis> AUTH {p}", "redis> AUTH {m}"),
    (None, "executing: CONFIG SET requirepass {p}", "executing: CONFIG SET requirepass {m}"),
    (None, '1700000000.123456 [0 127.0.0.1:50000] "AUTH" "{p}"', '1700000000.123456 [0 127.0.0.1:50000] "AUTH" "{m}"'),
    (
        None,
        '1700000000.123456 [0 127.0.0.1:50000] "auth" "default" "{p}"',
        '1700000000.123456 [0 127.0.0.1:50000] "auth" "default" "{m}"',
    ),
    (None, "query failed: ALTER USER app WITH PASSWORD '{p}'", "query failed: ALTER USER app WITH PASSWORD '{m}'"),
    (
        None,
        "migration ran CREATE USER reporter IDENTIFIED BY '{p}'",
        "migration ran CREATE USER reporter IDENTIFIED BY '{m}'",
    ),
)


def datastore_cases(rng: random.Random) -> Iterator[Case]:
    for key, template, expected in DATASTORE:
        for _ in range(2):
            p = password(rng).replace("'", "")
            yield Case(
                "datastore_auth", True, template.format(p=p), key, (p,), expected.format(m="[REDACTED:password]")
            )


DATASTORE_NEGATIVES = (
    ("db.statement", "AUTH ?"),
    ("db.statement", "AUTH ? ?"),
    ("db.statement", "GET session:123"),
    ("db.statement", "SET user:42:name bob"),
    ("db.statement", "CONFIG GET maxmemory"),
    ("db.statement", "CONFIG SET maxmemory 2gb"),
    ("db.statement", "ACL WHOAMI"),
    ("db.statement", "SELECT * FROM users WHERE password_hash = $1"),
    ("db.statement", "ALTER USER app WITH PASSWORD %s"),
    ("db.statement", "ALTER USER app PASSWORD NULL"),
    ("db.statement", "CREATE USER app IDENTIFIED BY %(password)s"),
    ("db.statement", "ALTER USER app VALID UNTIL '2025-01-01'"),
    ("db.statement", "GRANT SELECT ON orders TO app"),
    ("db.statement", "CREATE USER app"),
    ("db.statement", "SELECT * FROM auth_users WHERE id = 42"),
    ("db.statement", "HGET auth:session:42 user"),
    ("db.statement", "SELECT id, password_changed_at FROM users WHERE id = ?"),
    (None, "redis AUTH failed: WRONGPASS invalid username-password pair"),
    (None, "authentication failed for user app"),
    (None, "auth service unavailable, retrying"),
    (None, "AUTH OK"),
    (None, "Redis AUTH succeeded for user default"),
    (None, "ALTER USER app WITH PASSWORD ? executed"),
    (None, "user identified by email"),
)


# -------------------------------------------------------------------------- 6-8. exemptions (negatives)

MASKED_FRAGMENTS: tuple[tuple[str | None, object], ...] = (
    ("card.last4", "4242"),
    ("card_last4", "4242"),
    ("payment.card_last4", 4242),
    ("last4", "1881"),
    ("masked_pan", "411111******1111"),
    ("card.masked_number", "**** **** **** 4242"),
    ("card_number_masked", "XXXX-XXXX-XXXX-4242"),
    ("masked_card_number", "************4242"),
    ("bin", "424242"),
    ("card.bin", 411111),
    ("card_bin", "510510"),
    ("pan_last_four", "0005"),
    ("cc_last4", "4444"),
    ("card_number_last4", "4242"),
    ("account_number_last4", "6789"),
    ("ssn_last4", "6789"),
    ("ssn_last_four", "6789"),
    ("phone_last4", "2671"),
    ("iban_last4", "3000"),
    ("card.iin", "400005"),
    ("card.first6", "411111"),
    (None, "card ending in 4242 declined"),
    (None, "Visa **** 4242 charged"),
    (None, "paid with card ***4242"),
    (None, "card_number_last4=4242 brand=visa"),
    ("http.response.body", '{"last4": "4242", "brand": "visa", "exp_month": 12, "exp_year": 2030}'),
    ("http.response.body", '{"card_number": "************4242", "bin": "424242"}'),
    ("http.response.body", '{"masked_pan": "411111XXXXXX1111"}'),
    ("http.response.body", '{"card": {"last4": 4242, "bin": 424242}}'),
    ("payment.masked_pan", "5105********5100"),
)

NON_SECRETS: tuple[tuple[str | None, object], ...] = (
    ("password_rules_v2", False),
    ("password_rules_v2", "false"),
    ("token_count", 128),
    ("password_policy", "strong"),
    ("password_max_age_days", 90),
    ("secret_rotation_days", 30),
    ("password_history", 5),
    ("password_complexity", "high"),
    ("jwt_leeway_seconds", 30),
    ("token_limit_per_minute", 600),
    ("session_timeout_minutes", 30),
    ("password_protected", "yes"),
    ("api_key_last_used_at", "2024-05-01T10:00:00Z"),
    ("secret_scanning", "enabled"),
    ("credentials_provider", "env"),
    ("password_reset_flow", "email"),
    ("gen_ai.usage.input_tokens", 12),
    ("password_min_length", 12),
    ("password_expiry_warning_days", 7),
    ("secret_version", 3),
    ("secret_store", "vault"),
    ("secrets_count", 4),
    ("cvv_check", "pass"),
    ("ssn_verified", True),
    ("password_changed_days_ago", 12),
    ("token_refresh_interval_s", 300),
    ("auth_retries", 3),
    ("password_reuse_window", 24),
    ("secret_type", "opaque"),
    ("jwt_algorithm", "RS256"),
    ("password_strength_score", 3),
    ("session_cookie_secure", "true"),
    ("api_key_rotation", "monthly"),
    ("credential_source", "instance-profile"),
    (None, "password_rules_v2=false token_count=128 password_policy=strong"),
    (None, '{"password_rules_v2": false, "token_count": 128, "password_policy": "strong"}'),
    (None, "password_max_age_days=90 secret_rotation_days=30 jwt_leeway_seconds=30"),
    ("http.response.body", '{"password_complexity": "high", "password_history": 5, "secret_version": 3}'),
    (None, "config: password_protected=yes secret_scanning=enabled"),
    ("app.config", {"password_policy": "strong", "token_count": 128, "password_rules_v2": False}),
)

SECRETS_UNDER_DESCRIPTIVE_KEYS: tuple[tuple[str, str], ...] = (
    ("password", "strong"),
    ("secret", "correcthorse"),
    ("db_password", "{p}"),
    ("password_value", "{p}"),
    ("secret_text", "{p}"),
    ("api_key", "{t}"),
    ("token", "{t}"),
    ("session_cookie", "{t}"),
    ("password_rules_v2", "{p}"),
    ("secret_rotation_days", "{t}"),
)

MASKED_LINES = (
    "login password=[REDACTED] user=bob",
    "password=*** user=bob",
    "password=<redacted> user=bob",
    "token: xxxx",
    "secret=[FILTERED]",
    "Authorization: Bearer [REDACTED]",
    "Authorization: Bearer ***",
    "Authorization: Basic <redacted>",
    "Authorization: Bearer xxxx",
    "Authorization: Bearer [FILTERED]",
    "header authorization=Bearer [REDACTED]",
    "api_key=******** region=eu",
    '{"password": "***", "msg": "login"}',
    '{"password": "[REDACTED]", "token": "<redacted>", "api_key": "[FILTERED]"}',
    '{"key": "password", "value": {"stringValue": "[REDACTED]"}}',
    "connecting to https://user:***@db.internal/app",
    "connecting to https://user:xxxxx@db.internal/app",
    "GET https://app.example.com/cb?code=***&state=abc 302",
    "GET /api?token=[REDACTED]&page=2",
    "GET /api?token=REDACTED&page=2",
    "redis AUTH ***",
    "mysql -u root -p*** shop",
    "docker login -u bot -p **** ghcr.io",
    "--password ****",
    '"secret": "<redacted>"',
    "secret: [MASKED]",
    "password: (hidden)",
    "password=••••••••",
    "Set-Cookie: session=[REDACTED]; Path=/; HttpOnly",
    "Cookie: sid=***; theme=[REDACTED]",
    "cookie sid=[FILTERED]",
    "client_secret=[FILTERED] client_id=web",
    "Bearer [REDACTED]",
    "password=[redacted]",
    "PGPASSWORD=*** psql -h db",
    "AWS_SECRET_ACCESS_KEY=****",
    "card 4111 XXXX XXXX 1111",
    "ssn ***-**-6789",
    "email b***@example.com",
    "phone +1 ***-***-2671",
)

# ------------------------------------------------------------------------------- categories before issue 17


def existing_sensitive(rng: random.Random) -> Iterator[Case]:
    text_forms = (
        (None, "auth failed with {s} for user 42"),
        ("exception.message", "ValueError: bad credential {s}"),
        ("http.request.body", None),
    )
    for category in VALUE_CATEGORIES:
        group = category if category in ("payment_card", "iban", "us_ssn", "email") else "vendor_token"
        for key, template in text_forms:
            for _ in range(2):
                secret = make(category, rng)
                value = json.dumps({"note": f"value {secret}"}) if template is None else template.format(s=secret)
                yield Case(group, True, value, key, (secret,))
    for _ in range(6):
        p, t = password(rng), token(rng)
        yield Case(
            "assignment",
            True,
            f"login password={p} user=bob",
            None,
            (p,),
            "login password=[REDACTED:password] user=bob",
        )
        yield Case("assignment", True, json.dumps({"user": "bob", "api_key": t}), "http.request.body", (t,))
        yield Case("assignment", True, f"Server=db;Database=app;User Id=sa;Password={p};", None, (p,))
        yield Case("assignment", True, f"AWS_SECRET_ACCESS_KEY={t}", None, (t,))
        yield Case("assignment", True, f"client_secret: {t}", None, (t,))
        yield Case("assignment", True, f"tool --password {p} --verbose", None, (p,))
        yield Case("assignment", True, f"{{'access_token': '{t}'}}", None, (t,))
        yield Case(
            "secret_key",
            True,
            p,
            rng.choice(
                [
                    "db.password",
                    "user.api_key",
                    "clientSecret",
                    "x.session_token",
                    "aws_secret_access_key",
                    "github_token",
                ]
            ),
            (p,),
        )
        yield Case("header", True, (f"Bearer {t}",), "http.request.header.authorization", (t,))
        yield Case("header", True, (f"sid={t}; theme=dark",), "http.request.header.cookie", (t,))
        yield Case("header", True, (t,), "http.request.header.x-api-key", (t,))
        yield Case("url_credential", True, f"https://app:{p}@db.internal/orders?page=2", "url.full", (p,))
        yield Case("url_credential", True, f"https://h.example.com/x?token={t}&page=2", "url.full", (t,))
        yield Case(
            "url_credential",
            True,
            f"https://bucket.s3.amazonaws.com/k?X-Amz-Signature={t}&X-Amz-Expires=60",
            "http.url",
            (t,),
        )
        yield Case("url_credential", True, f"connect postgres://app:{p}@db:5432/app failed", None, (p,))
        yield Case("sql_literal", True, f"UPDATE users SET password = '{p}' WHERE id = 1", "db.statement", (p,))
        yield Case(
            "sql_literal",
            True,
            f"INSERT INTO users (email_verified, api_key) VALUES (true, '{t}')",
            "db.statement",
            (t,),
        )
    for _ in range(6):
        card = luhn_complete(rng.choice(["4", "51", "6011"]), 16, rng)
        yield Case(
            "payment_card",
            True,
            f"{card[:4]} {card[4:8]} {card[8:12]} {card[12:]}",
            "payment.note",
            (card[4:8] + " " + card[8:12],),
        )
        yield Case("payment_card", True, int(card), "amount_ref", (card,))
        yield Case("iban", True, f"transfer to {iban(rng, 'GB')}", None, ())
        yield Case("us_ssn", True, f"ssn on file {ssn(rng)}", None, ())
        yield Case("email", True, f'{{"to": "{make("email", rng)}"}}', "messaging.body", ())


def _fix_empty_secrets(cases: list[Case]) -> list[Case]:
    fixed = []
    for case in cases:
        if case.sensitive and not case.secrets and isinstance(case.value, str):
            # the secret is the last word (IBAN, SSN) or the address
            word = case.value.rsplit(" ", 1)[-1]
            if case.category == "email":
                word = json.loads(case.value)["to"]
            fixed.append(Case(case.category, True, case.value, case.key, (word,), case.expected, case.mode))
        else:
            fixed.append(case)
    return fixed


EXISTING_NEGATIVES: tuple[tuple[str, str | None, object], ...] = (
    ("identifier", "order.id", "3f2b8c1e-9d4a-4b7e-a1c2-5e6f7a8b9c0d"),
    ("identifier", None, "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7"),
    ("identifier", "vcs.ref.head.revision", "9fceb02d0ae598e95dc970b74767f19372d61af8"),
    ("identifier", "container.image.id", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ("identifier", None, 'etag W/"5d41402abc4b2a76b9719d911017c592"'),
    ("identifier", "stripe.customer", "cus_NffrFeUfNV2Hib"),
    ("identifier", "stripe.publishable", "pk_live_51H7abcdefghijklmnopqrstuvwxyz"),
    ("identifier", None, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl deploy@ci"),
    ("identifier", "k8s.pod.uid", "0b4b0e3c-7d0a-4f2e-9b1a-2c3d4e5f6a7b"),
    ("identifier", None, "request_id=01HZX3K8Q6Y7W2V5T4S3R2Q1P0 done"),
    ("number", "time.epoch_ms", "1718035200123"),
    ("number", None, "created 1718035200123 ns 1718035200123456789"),
    ("number", "order.total_cents", 123456789012),
    ("number", None, "order 4111111111111112 not found"),
    ("number", "db.rows", 1234567890123456),
    ("benign_key", "author", "Jane Doe"),
    ("benign_key", "secretary", "Bob"),
    ("benign_key", "gen_ai.request.max_tokens", 2048),
    ("benign_key", "oauth_provider", "google"),
    ("benign_key", "browserSessionId", "a81bc81b"),
    ("benign_key", "next_page_token", "CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA"),
    ("benign_key", "gen_ai.usage.output_tokens", 512),
    ("benign_key", "password_policy", "min12-symbols"),
    ("benign_key", "api_key_id", "key_0123456789"),
    ("benign_key", "secret_name", "shop/prod/db"),
    ("benign_url", "url.full", "https://api.example.com/v1/users/123?page=2&limit=50"),
    ("benign_url", "http.url", "https://shop.example.com/search?q=blue+shoes&sort=price"),
    ("benign_url", None, "GET https://api.example.com/health 200"),
    ("benign_url", "url.full", "https://cdn.example.com/assets/app.3f2b8c1e.js"),
    ("benign_sql", "db.statement", "SELECT * FROM users WHERE email = $1 AND password_hash = $2"),
    ("benign_sql", "db.statement", "UPDATE users SET password = %s WHERE id = %s"),
    ("benign_sql", "db.statement", "INSERT INTO users (name, password) VALUES (?, ?)"),
    ("benign_sql", "db.statement", "SELECT id, name FROM products WHERE price > 100 ORDER BY id LIMIT 50"),
    (
        "benign_text",
        "user_agent.original",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
    ),
    ("benign_text", None, "password reset email sent"),
    ("benign_text", None, "Basic authentication required"),
    ("benign_text", None, "invalid token for user 42"),
    ("benign_text", None, "login failed: wrong password"),
    ("benign_text", "http.route", "/api/v1/orders/{order_id}"),
    ("benign_text", None, "payload base64 SGVsbG8sIFdvcmxkIQ== received"),
    ("benign_text", "code.function.name", "verify_password"),
    ("benign_text", None, "GET /api/v1/tokens 200 in 12 ms"),
    ("benign_text", "messaging.destination.name", "orders.password-reset"),
)


def cases() -> list[Case]:
    rng = random.Random(17)
    out: list[Case] = []
    out.extend(cli_cases(rng))
    out.extend(Case("cli_credential", False, text) for text in CLI_NEGATIVES)
    out.extend(phone_cases(rng))
    out.extend(Case("phone", False, value, key) for key, value in PHONE_NEGATIVES)
    out.extend(prose_cases(rng))
    out.extend(Case("prose_token", False, text, rng.choice([None, "exception.message"])) for text in PROSE_NEGATIVES)
    out.extend(url_cases(rng))
    out.extend(url_negative_cases(rng))
    out.extend(datastore_cases(rng))
    out.extend(Case("datastore_auth", False, value, key) for key, value in DATASTORE_NEGATIVES)
    out.extend(Case("masked_fragment", False, value, key) for key, value in MASKED_FRAGMENTS)
    for _ in range(3):
        card = luhn_complete("4", 16, rng)
        out.append(Case("masked_fragment", True, card, "masked_pan", (card,)))
        out.append(Case("masked_fragment", True, json.dumps({"last4": card}), "http.response.body", (card,)))
    out.extend(Case("sensitive_word_non_secret", False, value, key) for key, value in NON_SECRETS)
    for key, template in SECRETS_UNDER_DESCRIPTIVE_KEYS:
        value = template.format(p=password(rng), t=token(rng))
        out.append(Case("sensitive_word_non_secret", True, value, key, (value,)))
        out.append(Case("sensitive_word_non_secret", True, f"{key}={value} ok", None, (value,)))
    out.extend(Case("already_masked", False, line, mode="scan") for line in MASKED_LINES)
    for _ in range(4):
        p = password(rng)
        out.append(Case("already_masked", True, f"login password={p} user=bob", None, (p,), mode="scan"))
        out.append(Case("already_masked", True, f"Authorization: Bearer {token(rng)}", None, (), mode="scan"))
    out.extend(_fix_empty_secrets(list(existing_sensitive(rng))))
    out.extend(Case(category, False, value, key) for category, key, value in EXISTING_NEGATIVES)
    out.extend(handwritten.cases())
    return out
