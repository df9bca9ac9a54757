"""The helm chart renders pods that hold only what they need (docs/deploy.md, ADR 0044):
no service pod gets the admin database URL or any admin credential, every key and
password of a service comes from a Secret, every container runs as a numeric non-root
user without capabilities on a read-only root, and every variable the chart sets is one
a service reads (docs/configuration.md)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import yaml

from clearway.shared.settings import PlatformSettings, ServiceSettings, is_secret
from clearway.shared.settings_doc import registered
from clearway.shared.testing.fixtures import repo_root

CHART = repo_root() / "helm" / "clearway"
EVERYTHING = CHART / "ci" / "everything-values.yaml"
ADMIN_SECRETS = {"clearway-postgres-admin", "clearway-kafka-admin"}
#: the clearway-topics job's Kafka login (not a service setting; docs/deploy.md)
TOOL_VARIABLES = {"CLEARWAY_ADMIN_KAFKA_USERNAME", "CLEARWAY_ADMIN_KAFKA_PASSWORD"}
JOBS = {"migrate", "topics"}
#: as in `make chart-check` (a helm built from source assumes Kubernetes 1.20)
KUBE_VERSION = "1.29.0"


@cache
def helm() -> str:
    binary = repo_root() / ".local" / "bin" / "helm"
    if not binary.exists():  # built once from the Go module proxy (make helm)
        subprocess.run(["make", "-s", "helm"], cwd=repo_root(), check=True, timeout=1800)
    return str(binary)


@cache
def render(values: str | None = None, *sets: str) -> tuple[dict[str, Any], ...]:
    args = [helm(), "template", "cw", str(CHART), "--kube-version", KUBE_VERSION]
    if values:
        args += ["-f", values]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=120).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def pods(docs) -> Iterator[tuple[str, dict[str, Any]]]:
    """(component, pod spec) of every Deployment and Job."""
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            labels = d["spec"]["template"]["metadata"]["labels"]
            yield labels["app.kubernetes.io/component"], d["spec"]["template"]["spec"]


def settings_of(component: str) -> type[ServiceSettings]:
    name = {"sandbox-rail": "rail"}.get(component, component)
    return next(c for c in registered() if c.service == name)


def secret_refs(container: dict[str, Any]) -> dict[str, str]:
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in container.get("env", [])
        if "valueFrom" in e
    }


VALUE_SETS = [pytest.param(None, id="defaults"), pytest.param(str(EVERYTHING), id="everything")]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_no_service_pod_gets_the_admin_database_url_or_admin_credentials(values):
    seen = set()
    for component, spec in pods(render(values)):
        seen.add(component)
        [c] = spec["containers"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        admin_refs = {v for v in secret_refs(c).values() if v in ADMIN_SECRETS}
        if component in JOBS:
            assert admin_refs, component  # the jobs are where the admin logins go
            continue
        assert not admin_refs, component
        assert "CLEARWAY_ADMIN_KAFKA_PASSWORD" not in env
        url = env["CLEARWAY_DATABASE_URL"]
        assert url and "@" not in url.split("?")[0], f"{component}: credentials in {url}"
        assert env["CLEARWAY_MIGRATE_AT_START"] == "false"
        assert env["CLEARWAY_CREATE_TOPICS_AT_START"] == "false"
    assert seen == {"transfer", "webhooks", "consent", "audit", "sandbox-rail", "vault"} | JOBS


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_key_and_password_of_a_service_comes_from_a_secret(values):
    docs = render(values)
    mutual_tls = any(
        e.get("value") == "SSL"
        for _, spec in pods(docs)
        for e in spec["containers"][0]["env"]
        if e["name"] == "CLEARWAY_KAFKA_SECURITY_PROTOCOL"
    )
    for component, spec in pods(docs):
        if component in JOBS:
            continue
        [c] = spec["containers"]
        cls = settings_of(component)
        from_secrets = secret_refs(c)
        plain = {e["name"] for e in c["env"] if "value" in e}
        for name, var, field in cls.env_fields():
            if mutual_tls and name == "kafka_password":  # the certificate is the login
                assert var not in from_secrets
            elif is_secret(field):
                assert var in from_secrets, f"{component}: {var} is not set from a Secret"
                assert var not in plain


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_container_runs_non_root_without_capabilities_or_api_token(values):
    for component, spec in pods(render(values)):
        assert spec["automountServiceAccountToken"] is False, component
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"]["type"] == "RuntimeDefault"
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0, component
            assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    accounts = [d for d in render(values) if d["kind"] == "ServiceAccount"]
    assert accounts and all(a["automountServiceAccountToken"] is False for a in accounts)


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_variable_the_chart_sets_is_a_setting(values):
    known = {var for _, var, _ in PlatformSettings.env_fields()} | TOOL_VARIABLES
    for cls in registered():
        known |= {var for _, var, _ in cls.env_fields()}
    for component, spec in pods(render(values)):
        for c in spec["containers"]:
            unknown = {e["name"] for e in c["env"]} - known
            # JWKS_URL: every verifying service reads it once docs/design.md §7's split
            # of issuer and key URL reaches it; the others ignore an unknown variable
            unknown = {v for v in unknown if not v.endswith("_JWKS_URL")}
            assert not unknown, f"{component}: {sorted(unknown)}"


def test_network_policies_let_only_consent_the_vault_and_the_rail_be_called_inside():
    docs = render(None)
    called = {}
    for d in docs:
        if d["kind"] != "NetworkPolicy" or "matchLabels" not in d["spec"]["podSelector"]:
            continue
        me = d["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for rule in d["spec"]["egress"]:
            for peer in rule.get("to", []):
                if "podSelector" in peer:
                    callee = peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                    called.setdefault(callee, set()).add(me)
    assert set(called) == {"consent", "vault", "sandbox-rail"}
    assert called["vault"] == called["sandbox-rail"] == {"transfer"}
    assert called["consent"] == {"transfer", "webhooks", "audit", "sandbox-rail", "vault"}


def test_the_jobs_run_before_the_services_on_install_and_upgrade():
    for d in render(str(EVERYTHING)):
        if d["kind"] == "Job" or (d["kind"] == "Secret"):
            assert d["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    topics = next(
        c
        for component, spec in pods(render(None))
        if component == "topics"
        for c in spec["containers"]
    )
    env = {e["name"]: e.get("value") for e in topics["env"]}
    assert env["CLEARWAY_TOPIC_REPLICATION_FACTOR"] == "3"
    assert env["CLEARWAY_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
    assert topics["command"] == ["clearway-topics", "--acls"]


def test_production_is_refused_until_rotated_logins_need_no_admin_in_the_pods():
    with pytest.raises(subprocess.CalledProcessError) as e:
        render(None, "env=production")
    assert "ADR 0044" in e.value.stderr
