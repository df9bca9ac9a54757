"""The helm chart renders pods that hold only what they need (docs/deploy.md, ADR 0044):
no service pod gets the admin database URL or any admin credential, every key and
password of a service comes from a Secret, every container runs as a numeric non-root
user without capabilities on a read-only root, and every variable the chart sets is one
a service reads (docs/configuration.md), which the service accepts in production."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import yaml

from clearway.shared.crypto.settings import KeySettings
from clearway.shared.settings import PlatformSettings, ServiceSettings, is_secret
from clearway.shared.settings_doc import registered
from clearway.shared.testing.fixtures import repo_root

CHART = repo_root() / "helm" / "clearway"
EVERYTHING = CHART / "ci" / "everything-values.yaml"
ADMIN_SECRETS = {"clearway-postgres-admin", "clearway-kafka-admin"}
#: the clearway-topics job's Kafka login (not a service setting; docs/deploy.md)
TOOL_VARIABLES = {"CLEARWAY_ADMIN_KAFKA_USERNAME", "CLEARWAY_ADMIN_KAFKA_PASSWORD"}
JOBS = {"migrate", "topics", "db-logins"}
#: the first render may build helm from the Go module proxy (minutes when cold)
pytestmark = pytest.mark.timeout(1800)
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
    """(component, pod spec) of every Deployment, Job and CronJob."""
    for d in docs:
        spec = d.get("spec", {})
        if d["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if d["kind"] in ("Deployment", "Job", "CronJob"):
            labels = spec["template"]["metadata"]["labels"]
            yield labels["app.kubernetes.io/component"], spec["template"]["spec"]


def environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment, each value from a Secret replaced by a stand-in
    that fits any setting (base64 of 32 bytes: key material or a password)."""
    stand_in = base64.b64encode(b"k" * 32).decode()
    return {e["name"]: e.get("value", stand_in) for e in container["env"]}


def settings_of(component: str) -> type[ServiceSettings]:
    name = {"sandbox-rail": "rail"}.get(component, component)
    return next(c for c in registered() if c.service == name)


def secret_refs(container: dict[str, Any]) -> dict[str, str]:
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in container.get("env", [])
        if "valueFrom" in e
    }


STATIC = ("env=test", "database.logins=static")
VALUE_SETS = [
    pytest.param((None,), id="defaults"),
    pytest.param((str(EVERYTHING),), id="everything"),
    pytest.param((None, *STATIC), id="static-logins"),
]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_no_service_pod_gets_the_admin_database_url_or_admin_credentials(values):
    seen = set()
    for component, spec in pods(render(*values)):
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
    assert seen >= {"transfer", "webhooks", "consent", "audit", "sandbox-rail", "vault"}
    assert seen >= {"migrate", "topics"}


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_key_and_password_of_a_service_comes_from_a_secret(values):
    for component, spec in pods(render(*values)):
        if component in JOBS:
            continue
        [c] = spec["containers"]
        cls = settings_of(component)
        from_secrets = secret_refs(c)
        plain = {e["name"] for e in c["env"] if "value" in e}
        secrets = {var for _, var, field in cls.env_fields() if is_secret(field)}
        assert not secrets & plain, component
        # none of the secrets the service uses is left unset or at a development default
        missing = cls.from_env(environment(c)).development_secrets()
        assert missing == [], f"{component}: {missing}"
        assert secrets & set(from_secrets), component


@pytest.mark.parametrize("values", VALUE_SETS[:2])
def test_every_service_pod_is_accepted_in_production_without_the_admin(values):
    for component, spec in pods(render(*values)):
        if component in JOBS:
            continue
        [c] = spec["containers"]
        cls = settings_of(component)
        settings = cls.from_env(environment(c))  # production's checks included
        assert settings.platform.env == "production"
        assert isinstance(settings, KeySettings) and settings.reads_db_logins, component


@pytest.mark.parametrize("values", VALUE_SETS)
def test_the_migrate_pods_have_what_each_service_migration_needs(values):
    for component, spec in pods(render(*values)):
        if component not in ("migrate", "db-logins"):
            continue
        [c] = spec["containers"]
        assert c["command"] == ["clearway-migrate"]
        for cls in (
            settings_of(n)
            for n in ("transfer", "webhooks", "consent", "audit", "sandbox-rail", "vault")
        ):
            settings = cls.from_env(environment(c), production_checks=False)
            assert isinstance(settings, KeySettings)
            if settings.rotates_db_logins:  # the reader login, the KEK's PIN
                assert settings.db_reader_password is not None and settings.hsm_pin, cls
            else:  # the static password the role is created with, not the built-in one
                assert settings.env_name("db_password") not in settings.development_secrets()


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_container_runs_non_root_without_capabilities_or_api_token(values):
    for component, spec in pods(render(*values)):
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
    accounts = [d for d in render(*values) if d["kind"] == "ServiceAccount"]
    assert accounts and all(a["automountServiceAccountToken"] is False for a in accounts)


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_variable_the_chart_sets_is_a_setting(values):
    known = {var for _, var, _ in PlatformSettings.env_fields()} | TOOL_VARIABLES
    for cls in registered():
        known |= {var for _, var, _ in cls.env_fields()}
    for component, spec in pods(render(*values)):
        for c in spec["containers"]:
            unknown = {e["name"] for e in c["env"]} - known
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


def test_production_refuses_static_database_passwords():
    with pytest.raises(subprocess.CalledProcessError) as e:
        render(None, "database.logins=static")
    assert "set database.logins=rotated" in e.value.stderr


def test_rotated_logins_are_rotated_by_a_scheduled_job():
    [cron] = [d for d in render(None) if d["kind"] == "CronJob"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert not [d for d in render(None, *STATIC) if d["kind"] == "CronJob"]


def test_service_monitors_scrape_each_service_metrics_when_enabled():
    assert not [d for d in render(None) if d["kind"] == "ServiceMonitor"]
    docs = render(str(EVERYTHING))
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == len(services) == 6
    for m in monitors:
        assert m["apiVersion"] == "monitoring.coreos.com/v1"
        service = services[m["metadata"]["name"]]
        assert m["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        [endpoint] = m["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
