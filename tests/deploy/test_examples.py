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
