"""Secrets: plaintext Secret objects, credentials in any file, and secrets in every new commit of a push."""

from __future__ import annotations

import pytest
from conftest import Clone, Push, Server

from gitops_hooks.checks.secrets import entropy, scan

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: apps
type: Opaque
stringData:
  password: {value}
"""

SOPS_SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: apps
type: Opaque
stringData:
  password: ENC[AES256_GCM,data:9Dbz0cVZ1w==,iv:Qm9ndXNJVkJvZ3VzSVZCb2d1cw==,tag:dGFnMTIzNDU2Nzg5MDEyMw==,type:str]
sops:
  age:
    - recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
      enc: |
        -----BEGIN AGE ENCRYPTED FILE-----
        YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBmYWtlZmFrZWZha2UK
        -----END AGE ENCRYPTED FILE-----
  lastmodified: "2024-05-01T10:00:00Z"
  mac: ENC[AES256_GCM,data:bWFjbWFjbWFj,iv:aXZpdml2aXZpdml2aXZpdg==,tag:dGFndGFndGFndGFn,type:str]
  version: 3.8.1
"""

SEALED = """\
apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata:
  name: db
  namespace: apps
spec:
  encryptedData:
    password: AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq7x8kVQ2b3mLpRtd0Xk1nq9HfWcUzB6sG
  template:
    metadata:
      name: db
      namespace: apps
"""

EXTERNAL = """\
apiVersion: external-secrets.io/v1beta1
kind: ExternalSecret
metadata:
  name: db
  namespace: apps
spec:
  secretStoreRef: {name: vault, kind: ClusterSecretStore}
  target: {name: db}
  data:
    - secretKey: password
      remoteRef: {key: apps/db, property: password}
"""

# Credentials made up for the tests (they have the right shape and are not real).
AWS_KEY = "AKIA" + "Q3EGRFZ7KX2MN4PW"
GITHUB_TOKEN = "ghp_" + "x7Kd9Lq2Vn4Rt8Wz1Yb6Hc3Jf5Mg0Ps2Aa9Ue"
SLACK_TOKEN = "xoxb-" + "2424242424-1313131313-aB3dE5gH7jK9mN1pQ3sT5vW7"
PASSWORD = "Zr7#qT2v!Lm9xW4p"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n" \
      "-----END RSA PRIVATE KEY-----\n"


def push_files(clone: Clone, files: dict[str, str]) -> Push:
    for path, text in files.items():
        clone.write(path, text)
    clone.commit("change")
    return clone.push()


def rule_lines(push: Push, rule: str) -> list[str]:
    return [line for line in push.remote_lines() if f"[{rule}]" in line]


def error_rules(push: Push) -> set[str]:
    return {line.split("[", 1)[1].split("]", 1)[0] for line in push.remote_lines() if ": error [" in line}


# ---------------------------------------------------------------------------- Secret objects

def test_plaintext_secret_is_refused_without_printing_the_value(server: Server, clone: Clone) -> None:
    push = push_files(clone, {"apps/db.yaml": SECRET.format(value=PASSWORD)})
    assert not push.accepted
    assert rule_lines(push, "secret-plaintext") == [
        "apps/db.yaml:8:3: error [secret-plaintext] secret/db holds plaintext values: stringData.password"]
    assert error_rules(push) == {"secret-plaintext"}
    assert PASSWORD not in push.output and PASSWORD[:4] not in push.output
    assert server.rev() is None


def test_base64_data_is_plaintext_too(server: Server, clone: Clone) -> None:
    text = SECRET.replace("stringData:\n  password: {value}\n", "data:\n  password: czNjcjN0\n  user: YWRtaW4=\n")
    push = push_files(clone, {"apps/db.yaml": text})
    assert not push.accepted
    assert rule_lines(push, "secret-plaintext") == [
        "apps/db.yaml:8:3: error [secret-plaintext] secret/db holds plaintext values: data.password, data.user"]


def test_sops_encrypted_secret_sealed_secret_and_external_secret_pass(server: Server, clone: Clone) -> None:
    empty = SECRET.replace("stringData:\n  password: {value}\n", "").replace("name: db", "name: empty")
    push = push_files(clone, {"apps/db.yaml": SOPS_SECRET, "apps/sealed.yaml": SEALED,
                              "apps/external.yaml": EXTERNAL, "apps/empty.yaml": empty})
    assert push.accepted, push.output
    assert [x for x in push.remote_lines() if "[secret-" in x] == []


def test_sops_block_with_one_plaintext_value_is_refused(server: Server, clone: Clone) -> None:
    text = SOPS_SECRET.replace("  password: ENC[", f"  user: {PASSWORD}\n  password: ENC[")
    push = push_files(clone, {"apps/db.yaml": text})
    assert not push.accepted
    assert rule_lines(push, "secret-plaintext") == [
        "apps/db.yaml:8:3: error [secret-plaintext] secret/db holds plaintext values: stringData.user "
        "(it has a sops: block, but these values are not ENC[...])"]


# ---------------------------------------------------------------------------- credentials in any file

@pytest.mark.parametrize("path,text,line,col,what", [
    ("apps/settings.yaml",
     f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\n  namespace: apps\ndata:\n  AWS_ACCESS_KEY_ID: {AWS_KEY}\n",
     7, 22, "an AWS access key id (AKIA…)"),
    ("charts/values-prod.yaml", f"github:\n  token: {GITHUB_TOKEN}\n", 2, 10, "a GitHub token (ghp_…)"),
    ("notify/config.ini", f"[slack]\nbot = {SLACK_TOKEN}\n", 2, 7, "a Slack token (xoxb-…)"),
    ("certs/server.key", PEM, 1, 1, "a private key (-----BEGIN RSA PRIVATE KEY-----)"),
    ("apps/web.yaml",
     "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: apps\nspec:\n  selector:\n"
     "    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n"
     "      containers:\n        - name: web\n          image: nginx:1.27\n          env:\n"
     f"            - name: DB_PASSWORD\n              value: \"{PASSWORD}\"\n",
     18, 23, "a high-entropy value for the variable 'DB_PASSWORD' (16 characters, not shown)"),
    ("apps/app.properties", f"spring.datasource.password={PASSWORD}\n", 1, 28,
     "a high-entropy value for 'spring.datasource.password' (16 characters, not shown)"),
])
def test_credentials_in_any_file_are_refused_and_redacted(
        server: Server, clone: Clone, path: str, text: str, line: int, col: int, what: str) -> None:
    push = push_files(clone, {path: text})
    assert not push.accepted
    assert rule_lines(push, "secret-value") == [f"{path}:{line}:{col}: error [secret-value] {what} in {path}"]
    for secret in (AWS_KEY, GITHUB_TOKEN, SLACK_TOKEN, PASSWORD, "MIIEowIBAAKCAQEA"):
        assert secret not in push.output
        assert secret[5:12] not in push.output  # nothing past the public prefix


def test_names_references_and_placeholders_are_not_secrets(server: Server, clone: Clone) -> None:
    values = (
        "auth:\n  existingSecret: grafana-admin-credentials\n  secretName: web-tls\n"
        "  passwordFile: /var/run/secrets/db/password\n  token: ${VAULT_TOKEN}\n  apiKey: <your-api-key>\n"
        "  tokenTTL: 3600s\n  password: changeme\n"
        "aws:\n  accessKeyId: AKIAIOSFODNN7EXAMPLE\n"  # AWS's documented example key
    )
    push = push_files(clone, {"charts/values.yaml": values})
    assert push.accepted, push.output
    assert rule_lines(push, "secret-value") == []


def test_scanner_units() -> None:
    assert entropy("aaaa") == 0.0
    assert entropy(PASSWORD) > 3.5
    assert [leak.line for leak in scan(f"a: 1\nkey: {AWS_KEY}\n")] == [2]
    assert scan("password: ENC[AES256_GCM,data:abc,iv:def,tag:ghi,type:str]\n") == []
    # Values inside a Secret or SealedSecret are the business of secret-plaintext, not of the text scan.
    assert scan(SEALED) == []
    assert scan(SECRET.format(value=PASSWORD)) == []


# ---------------------------------------------------------------------------- history

def test_secret_added_and_removed_within_one_push_is_refused_naming_the_commit(
        server: Server, clone: Clone) -> None:
    clone.write("apps/settings.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\n  namespace: apps\n")
    clone.commit("base")
    assert clone.push().accepted
    clone.write("apps/creds.env", f"AWS_ACCESS_KEY_ID={AWS_KEY}\n")
    bad = clone.commit("add credentials")
    clone.remove("apps/creds.env")
    clone.commit("oops, remove them")
    push = clone.push()
    assert not push.accepted
    assert rule_lines(push, "secret-in-history") == [
        f"apps/creds.env:1:19: error [secret-in-history] commit {bad[:12]} adds an AWS access key id (AKIA…); "
        "history keeps it even if a later commit removes it"]
    assert "hint: rewrite the commits before pushing" in push.output


def test_plaintext_secret_in_an_intermediate_commit_is_refused(server: Server, clone: Clone) -> None:
    clone.write("apps/db.yaml", SECRET.format(value=PASSWORD))
    bad = clone.commit("plaintext first")
    clone.write("apps/db.yaml", SOPS_SECRET)
    clone.commit("then encrypted")
    push = clone.push()
    assert not push.accepted
    got = rule_lines(push, "secret-in-history")
    assert got == [f"apps/db.yaml:8:3: error [secret-in-history] commit {bad[:12]} adds a plaintext Secret: "
                   "secret/db holds plaintext values: stringData.password; history keeps it even if a later "
                   "commit encrypts or removes it"]
    assert error_rules(push) == {"secret-in-history"}  # the tip itself is clean


def test_clean_history_is_accepted_and_old_commits_are_not_rescanned(server: Server, clone: Clone) -> None:
    clone.write("apps/db.yaml", SOPS_SECRET)
    clone.commit("encrypted")
    clone.write("apps/settings.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\n  namespace: apps\n")
    clone.commit("more")
    push = clone.push()
    assert push.accepted, push.output
    assert rule_lines(push, "secret-in-history") == []


def test_history_respects_path_excludes(server: Server, clone: Clone) -> None:
    server.configure("paths:\n  exclude: ['docs/**']\n")
    clone.write("docs/example.md", f"export AWS_ACCESS_KEY_ID={AWS_KEY}\n")
    clone.commit("doc example")
    clone.remove("docs/example.md")
    clone.write("apps/settings.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\n  namespace: apps\n")
    clone.commit("drop it")
    push = clone.push()
    assert push.accepted, push.output


def test_history_respects_the_administrators_allow_entries(server: Server, clone: Clone) -> None:
    server.configure("allow:\n  - {rule: secret-plaintext, kind: Secret, namespace: apps, name: db}\n")
    for value in ("first-value-1", "second-value-2", "third-value-3"):
        clone.write("apps/db.yaml", SECRET.format(value=value))
        clone.commit(f"set {value}")
    push = clone.push()
    assert push.accepted, push.output
    assert rule_lines(push, "secret-in-history") == []


def test_history_respects_allow_entries_for_secret_values(server: Server, clone: Clone) -> None:
    server.configure("allow:\n  - {rule: secret-value, path: 'tests/fixtures/**'}\n")
    clone.write("tests/fixtures/aws.env", f"AWS_ACCESS_KEY_ID={AWS_KEY}\n")
    clone.commit("fixture")
    clone.remove("tests/fixtures/aws.env")
    clone.write("apps/settings.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\n  namespace: apps\n")
    clone.commit("fixture gone")
    push = clone.push()
    assert push.accepted, push.output
    clone.write("other/aws.env", f"AWS_ACCESS_KEY_ID={AWS_KEY}\n")
    clone.commit("not a fixture")
    clone.remove("other/aws.env")
    clone.commit("gone again")
    push = clone.push()
    assert not push.accepted
    assert [x.split(":")[0] for x in rule_lines(push, "secret-in-history")] == ["other/aws.env"]


@pytest.mark.parametrize("line_length", [600, 9000])
def test_positions_in_a_big_text_with_many_leaks(line_length: int) -> None:
    """Lines and columns stay exact whether they come from counting line breaks (the first findings of a
    text) or from the index of line breaks (a text with many, or with lines longer than the search back)."""
    filler = "# " + "x" * (line_length - 2)
    lines, expected = [], []
    for i in range(40):
        lines.extend([filler] * (i % 5 + 1))
        key = f"aZ9kQ2xW7pL4mN8vB3cR6tY{i:02}"
        lines.append(f"{'  ' * (i % 3)}password: {key}")
        expected.append((len(lines), 2 * (i % 3) + 11))
    text = "\n".join(lines) + "\n"
    assert len(text) > 65536
    assert [(leak.line, leak.column) for leak in scan(text)] == expected


WORDS = ["pass", "PASSWORD", "Secret", "token", "api_key", "api-key", "APIKEY", "accaccess_key", "access-key",
         "auth_key", "authkey", "private-key", "PrivateKey", "credential", "AKIA", "ASIA", "AKIASIA", "akia",
         "ghp_", "gho_", "github_pat_", "xox", "xoxox", "XOX", "hooks.slack.com", "PRIVATE KEY", "private key",
         "İ", "ß", "é", "\n", " ", ": ", "=", "\"", "'", "---\n", "kind: Secret\n", AWS_KEY, PASSWORD]


def _texts() -> list[str]:
    import random

    from conftest import CORPUS

    rng = random.Random(6)
    texts = ["", "\udc80 password: aZ9kQ2xW7pL4mN8vB3cR6tY1\n"]  # a lone surrogate: the fallback path
    texts += ["".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60))) for _ in range(3000)]
    if CORPUS.is_dir():
        texts += [p.read_text("utf-8", "replace") for p in sorted(CORPUS.rglob("*")) if p.is_file()]
    return texts


def test_one_pass_search_finds_what_the_word_by_word_scans_find(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Aho-Corasick pass reports the same keyword offsets and marked lines, hence the same leaks, as the
    scans with str.find and re (the path taken without ahocorasick-rs): overlapping words, mixed case,
    letters that lower to two characters, and the real manifests of the corpus."""
    from gitops_hooks.checks import secrets

    assert secrets._AUTOMATON is not None, "ahocorasick-rs is a dependency: the one-pass search must be on"
    texts = _texts()
    assert any(t.isascii() for t in texts) and not all(t.isascii() for t in texts)  # bytes and str searched
    fast = [(secrets._search(t), scan(t)) for t in texts]
    monkeypatch.setattr(secrets, "_AUTOMATON", None)
    slow = [(secrets._search(t), scan(t)) for t in texts]
    lines = []
    for text, ((stems, marks), leaks), ((slow_stems, slow_marks), slow_leaks) in zip(texts, fast, slow, strict=True):
        assert stems == slow_stems, text[:200]
        doc = secrets._Text(text)
        for hits, slow_hits in zip(marks, slow_marks, strict=True):
            assert set(hits) >= set(slow_hits)  # every hit, overlapping ones too: the same lines
            assert set(secrets._marked_lines(doc, hits)) == set(secrets._marked_lines(doc, slow_hits))
            lines.extend(secrets._marked_lines(doc, hits))
        assert leaks == slow_leaks, text[:200]
    assert lines and sum(bool(leaks) for _, leaks in fast) > 100  # the texts do hold markers and leaks
