# ruff: noqa: E501  (corpus data: log lines are kept whole)
"""Hand-written cases: realistic log lines, messages and attributes, written without looking at the rules."""

from __future__ import annotations

from tests.redaction.corpus import Case

# (category, key, value, secret) — sensitive
SENSITIVE: tuple[tuple[str, str | None, str, str], ...] = (
    (
        "cli_credential",
        None,
        "Executing: mysqldump -h 127.0.0.1 -P 3306 -u backup -pQx7!vLm29 --databases shop",
        "Qx7!vLm29",
    ),
    (
        "cli_credential",
        "exception.message",
        "Command '['mysql', '--user=root', '--password=Zq8#kLp2w', '-e', 'SHOW DATABASES']' returned non-zero exit status 1.",
        "Zq8#kLp2w",
    ),
    ("cli_credential", None, 'sh -c "redis-cli -h redis.svc -a Rk9fT2mQ1x --no-auth-warning ping"', "Rk9fT2mQ1x"),
    (
        "cli_credential",
        None,
        "docker login --username=deployer --password=Dk3rPa55word9 registry.gitlab.com",
        "Dk3rPa55word9",
    ),
    (
        "cli_credential",
        None,
        "curl -fsSL -u 'jenkins:J3nk1ns!Tok' https://artifactory.internal/api/repos",
        "J3nk1ns!Tok",
    ),
    (
        "cli_credential",
        None,
        "FileNotFoundError: [Errno 2] No such file or directory: 'sshpass' while running ['sshpass', '-p', 'Ss7hP4ss!', 'scp', 'a', 'b']",
        "Ss7hP4ss!",
    ),
    (
        "cli_credential",
        None,
        "psql postgresql://report:R3p0rtPw9@pg.internal:5432/analytics -c 'select 1'",
        "R3p0rtPw9",
    ),
    ("cli_credential", None, "mongo --host mongo0 -u admin -p Mg0Adm1nPw --authenticationDatabase admin", "Mg0Adm1nPw"),
    ("phone", None, "Order 1042 confirmed, we will text +61 412 345 678 when it ships", "+61 412 345 678"),
    (
        "phone",
        "http.request.body",
        '{"billing": {"name": "A. Smith", "telephone": "+33 6 12 34 56 78"}}',
        "+33 6 12 34 56 78",
    ),
    ("phone", None, "twilio: message to +447911123456 queued (sid SM1234)", "+447911123456"),
    ("phone", "db.statement", "UPDATE contacts SET mobile='(212) 555-0147' WHERE contact_id=77", "(212) 555-0147"),
    ("phone", None, "Callback requested: 0049 30 12345678", "30 12345678"),
    ("phone", "customer.tel", "+1 646 555 0199", "+1 646 555 0199"),
    (
        "prose_token",
        None,
        "Support ticket: customer says 'my API key is Zk29dLq8Xw7Pm3Nt' and it stopped working",
        "Zk29dLq8Xw7Pm3Nt",
    ),
    ("prose_token", "exception.message", "AuthError: token Hq7wZx92LmPp41Ks rejected by upstream", "Hq7wZx92LmPp41Ks"),
    ("prose_token", None, "reminder: wifi password is Blue!Fish42", "Blue!Fish42"),
    ("prose_token", None, "Your one-time code is 731904. It expires in 10 minutes.", "731904"),
    (
        "url_one_time",
        "url.full",
        "https://myapp.example.com/oidc/callback?state=xyz123&code=SplxlOBeZQQYbYS6WxSbIA&session_state=abc",
        "SplxlOBeZQQYbYS6WxSbIA",
    ),
    (
        "url_one_time",
        None,
        '127.0.0.1 - - [05/Dec/2026:08:00:00 +0000] "GET /account/reset?token=9f8e7d6c5b4a39281706f5e4d3c2b1a0 HTTP/1.1" 200 512',
        "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    ),
    (
        "url_one_time",
        "http.target",
        "/login/magic?magic_link_token=ml_8KQx2pZ7rT4w&utm_source=email",
        "ml_8KQx2pZ7rT4w",
    ),
    ("url_one_time", "url.query", "otp=884213&remember_device=true", "884213"),
    ("datastore_auth", "db.statement", "AUTH Sup3rS3cret!", "Sup3rS3cret!"),
    ("datastore_auth", "db.statement", "CREATE USER 'grafana'@'10.%' IDENTIFIED BY 'Gr4f4n4Pw'", "Gr4f4n4Pw"),
    (
        "datastore_auth",
        None,
        "psycopg2.errors.SyntaxError: syntax error at or near \"PASSWORD\" LINE 1: ALTER ROLE app WITH PASSWORD 'Pg9Role!pw' VALID UNTIL",
        "Pg9Role!pw",
    ),
    (
        "datastore_auth",
        None,
        "redis.exceptions.ResponseError: executing CONFIG SET requirepass N3wR3disPw",
        "N3wR3disPw",
    ),
)

# (category, key, value) — must come back unchanged
NEGATIVE: tuple[tuple[str, str | None, object], ...] = (
    ("cli_credential", None, "Started process ['gunicorn', '--workers', '4', '--bind', '0.0.0.0:8000', 'app:wsgi']"),
    ("cli_credential", None, "docker run -d -p 5432:5432 -e POSTGRES_DB=shop postgres:16"),
    ("cli_credential", None, "ssh -i ~/.ssh/deploy -p 22 ubuntu@10.1.2.3 'systemctl restart app'"),
    ("cli_credential", None, "mysql -h db -u readonly -p shop < report.sql"),
    ("cli_credential", None, "curl -sf -o /dev/null -w '%{http_code}' https://example.com/health"),
    ("cli_credential", None, "kubectl exec -it pod/api-7d9f -c api -- python manage.py migrate"),
    ("phone", None, "GC pause 12.345 ms, heap 1,048,576 KB"),
    ("phone", None, "Processed 1200 of 5600 records (21.4%) in 00:00:42"),
    ("phone", None, "listening on [::]:8080 and 127.0.0.1:9090"),
    ("phone", None, "release 2024.05.1 deployed to eu-west-1 at 2024-05-06 10:11:12"),
    ("phone", None, "invoice INV-2024-0042 total 1234.50 EUR due 2024-06-01"),
    ("phone", "http.response.body", '{"id": 8812734, "items": [101, 202, 303], "version": "3.2.1", "ts": 1717171717}'),
    ("phone", None, "WARNING: 3 retries (backoff 0.5 1.0 2.0 s)"),
    ("phone", None, "k8s node ip-10-0-1-23.ec2.internal ready"),
    ("phone", None, "dimensions 1920 1080 30 fps"),
    ("phone", None, "matrix [[0 1 2] [3 4 5]]"),
    ("prose_token", None, "Token validation failed: signature expired"),
    ("prose_token", None, "Please enter your password to continue"),
    ("prose_token", None, "The key is not in the cache"),
    ("prose_token", None, "Refreshing access token for client web-frontend"),
    ("prose_token", None, "PIN entry screen shown"),
    ("prose_token", None, "password is required for user alice"),
    ("prose_token", None, "secret is mounted at /var/run/secrets/kubernetes.io/serviceaccount/token"),
    (
        "url_one_time",
        "url.full",
        "https://github.com/login/oauth/authorize?client_id=Iv1.8a61f9b3a7aba766&scope=read:user&state=9c1b",
    ),
    ("url_one_time", "url.full", "https://shop.example.com/api/products?category=shoes&code_page=2&ref=home"),
    ("url_one_time", None, "GET /api/v2/orders?status=paid&from=2024-01-01&to=2024-01-31 200"),
    ("datastore_auth", "db.statement", "SELECT * FROM users WHERE username = 'alice'"),
    ("datastore_auth", "db.statement", "GET auth_token:ttl"),
    ("datastore_auth", "db.statement", "ALTER USER app SET search_path TO shop"),
    ("datastore_auth", None, "Redis AUTH required but not configured"),
    ("masked_fragment", "payment.card.last4", "0004"),
    ("masked_fragment", None, "Charged card •••• 4242 (visa)"),
    ("sensitive_word_non_secret", "feature.password_login_enabled", "true"),
    ("sensitive_word_non_secret", "llm.token_usage", 4821),
    ("sensitive_word_non_secret", "auth.session_ttl_seconds", 3600),
)


def cases() -> list[Case]:
    out = [Case(category, True, value, key, (secret,)) for category, key, value, secret in SENSITIVE]
    out.extend(Case(category, False, value, key) for category, key, value in NEGATIVE)
    return out
