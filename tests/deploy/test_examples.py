"""The deployment examples are real: the config example validates, the YAML files parse,
the namespace rules in the example resolve the way their comments say."""

from __future__ import annotations

from pathlib import Path

import yaml

from registry.config import load_config
from tests.support.paths import REPO

DEPLOY = REPO / "deploy"


def test_example_config_is_valid_and_means_what_it_says() -> None:
    config = load_config(DEPLOY / "examples" / "zoll.yaml", environ={})
    assert config.storage.driver == "s3" and config.storage.s3.redirect
    assert config.namespace("opendesk/nextcloud/server").admission == "enforce"
    assert config.namespace("sandbox/try").admission == "warn"
    assert config.namespace("other/app").admission == "off"


def test_deployment_yaml_files_parse() -> None:
    files = [p for p in DEPLOY.rglob("*.yaml") if "templates" not in p.parts]
    assert len(files) >= 5
    for path in files:
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(d is not None for d in docs), path


def test_containerfile_runs_unprivileged() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert "USER 10001" in text and 'ENTRYPOINT ["zoll", "serve"]' in text


def test_helm_values_name_every_secret_the_templates_use() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "zoll" / "values.yaml").read_text())
    deployment = (DEPLOY / "helm" / "zoll" / "templates" / "deployment.yaml").read_text()
    for ref in (".Values.database.existingSecret", ".Values.s3.existingSecret"):
        assert ref in deployment
    assert values["database"]["existingSecret"] and values["s3"]["existingSecret"]
    assert Path(DEPLOY / "policies" / "kyverno-require-zoll-vsa.yaml").exists()


def test_kyverno_quorum_example_asks_two_of_three_node_keys_for_passed() -> None:
    policy = yaml.safe_load((DEPLOY / "policies" / "kyverno-require-two-nodes.yaml").read_text())
    rule = policy["spec"]["rules"][0]["verifyImages"][0]
    [attestation] = rule["attestations"]
    assert attestation["type"] == "https://slsa.dev/verification_summary/v1"
    [attestor] = attestation["attestors"]
    assert attestor["count"] == 2 and len(attestor["entries"]) == 3
    keys = {e["keys"]["publicKeys"] for e in attestor["entries"]}
    assert len(keys) == 3  # three distinct node keys
    assert attestation["conditions"][0]["all"][0]["value"] == "PASSED"
    assert rule["verifyDigest"] and rule["required"]


def test_opendesk_mirror_set_covers_the_suite_with_pinned_tags() -> None:
    from registry.mirror.sets import MirrorSet

    mirror_set, _ = MirrorSet.load(DEPLOY / "examples" / "opendesk-mirror.yaml")
    assert len(mirror_set.mirrors) >= 100
    targets = {m.target for m in mirror_set.mirrors}
    assert len(targets) == len(mirror_set.mirrors)  # no two entries write one repository
    for entry in mirror_set.mirrors:
        assert entry.pinned() and all(entry.pinned().values()), entry.name
    sources = {m.source for m in mirror_set.mirrors}
    assert any("nextcloud" in s for s in sources) and any("collabora" in s for s in sources)


def test_opendesk_release_description_becomes_one_mirror_set() -> None:
    from registry.mirror.sets import MirrorSet

    mirror_set, _ = MirrorSet.load(DEPLOY / "examples" / "opendesk-release.yaml")
    assert mirror_set.name == "opendesk" and mirror_set.release is not None
    assert mirror_set.release.version == "1.17.0"
    keys = mirror_set.release.images
    assert len(keys) >= 100 and keys["clamd"] == keys["freshclam"]  # one image, two keys
    assert len(mirror_set.mirrors) == len(set(keys.values()))
    for entry in mirror_set.mirrors:
        assert entry.target.startswith("opendesk/")
        assert entry.pinned() and all(entry.pinned().values()), entry.name


def test_example_trust_policy_loads_and_means_what_it_says(tmp_path: Path) -> None:
    """With the keys it names next to it, the example is a valid policy, and its rules
    pick the policies its comments say."""
    import shutil

    from attest.keys import PrivateKey
    from attest.trust_policy import TrustPolicySet

    policy = tmp_path / "trust.yaml"
    shutil.copy(DEPLOY / "examples" / "trust.yaml", policy)
    (tmp_path / "keys").mkdir()
    for name in ("supplier", "zoll-rebuild"):
        (tmp_path / "keys" / f"{name}.pub").write_text(PrivateKey.generate().public.pem())
    loaded = TrustPolicySet.load(policy)
    chosen = {
        repo: found.name if (found := loaded.for_repository(repo)) else None
        for repo in ("opendesk/nextcloud", "opendesk/collabora", "mirror/anything")
    }
    assert chosen == {
        "opendesk/nextcloud": "github-release",
        "opendesk/collabora": "supplier",
        "mirror/anything": "rebuilt",
    }


HELM = DEPLOY / "helm" / "zoll"


def test_helm_chart_meets_zolls_own_criteria() -> None:
    """Zoll's deployment passes what Zoll asks of the images it admits: by digest (HC-01),
    numeric non-root user (HC-18), read-only root (HC-24), probes (HC-25), no privilege
    escalation, no capabilities, the runtime's seccomp profile, bounded resources."""
    values = yaml.safe_load((HELM / "values.yaml").read_text())
    deployment = (HELM / "templates" / "deployment.yaml").read_text()
    assert "@{{ required" in deployment and ".Values.image.digest" in deployment  # HC-01
    pod, container = values["podSecurityContext"], values["securityContext"]
    assert pod["runAsNonRoot"] and pod["runAsUser"] == 10001 and pod["runAsGroup"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readOnlyRootFilesystem"] and not container["allowPrivilegeEscalation"]
    assert container["capabilities"] == {"drop": ["ALL"]} and container["runAsNonRoot"]
    assert "toYaml .Values.podSecurityContext" in deployment
    assert "toYaml .Values.securityContext" in deployment
    assert "automountServiceAccountToken: false" in deployment
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in deployment
    assert values["resources"]["limits"]["memory"] and values["resources"]["limits"]["cpu"]


def test_helm_chart_has_ingress_tls_service_monitor_and_disruption_budget() -> None:
    values = yaml.safe_load((HELM / "values.yaml").read_text())
    templates = {p.name: p.read_text() for p in (HELM / "templates").glob("*.yaml")}
    ingress = templates["ingress.yaml"]
    assert "kind: Ingress" in ingress and "tls:" in ingress and "secretName" in ingress
    assert values["ingress"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    monitor = templates["servicemonitor.yaml"]
    assert "kind: ServiceMonitor" in monitor and "basicAuth" in monitor and "/metrics" in monitor
    assert "kind: PodDisruptionBudget" in templates["pdb.yaml"]
    assert values["podDisruptionBudget"] == {"enabled": True, "minAvailable": 1}
    # every template a value switches on is balanced and names the release
    for name, text in templates.items():
        assert text.count("{{- if") == text.count("{{- end }}"), name
        assert "{{ .Release.Name }}-zoll" in text, name


def test_compose_pins_every_image_and_runs_zoll_unprivileged() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        image = service.get("image")
        if image is None:
            continue  # built from deploy/Containerfile
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert "@sha256:" in image or (tag and tag != "latest" and "." in tag), (name, image)
    zoll = compose["services"]["zoll"]
    assert zoll["read_only"] and zoll["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in zoll["security_opt"]
