"""`gapless release plan`: a possible order is shown with its point of no rollback; an impossible one is
refused with exit 2 naming the step, and so is every malformed release."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gapless.cli.main import app
from tests.conftest import EXAMPLES

RENAME = EXAMPLES / "rename"


def plan(path: Path, *extra: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["release", "plan", "-f", str(path), *extra], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def release_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rename"
    shutil.copytree(RENAME, d)
    return d


def test_the_example_release_plans() -> None:
    """The rename example is a valid order; its point of no rollback is the contract step."""
    code, stdout, _ = plan(RENAME / "release.yaml")
    assert code == 0
    assert "point of no rollback: step 13 (complete migration 0001_full_name on shop (contract))" in " ".join(
        stdout.split()
    )
    code, stdout, _ = plan(RENAME / "release.yaml", "-o", "json")
    data = json.loads(stdout)
    assert data["pointOfNoRollback"] == 13
    assert [s["kind"] for s in data["steps"]] == [
        "migrate",
        "rollout",
        *["flag", "wait"] * 4,  # internal, beta, 25%, everyone: each watched
        "verify",
        "verify",
        "approve",
        "complete",
    ]
    assert data["steps"][1]["serves"] == [
        "database shop: (current) + 0001_full_name",
        "rollout shop: shop-v2.yaml",
    ]
    assert data["steps"][0]["rollback"] == "migration rolled back until step 13 runs; not after"
    assert data["steps"][1]["rollback"] == "previous revision restored until step 13 runs; not after"
    assert data["steps"][2]["rollback"] == "flag restored"


def test_complete_before_the_rollout_is_refused_naming_the_step(release_dir: Path) -> None:
    """Contracting while shop still runs v1 (the canary comes after) is exit 2 naming the rollout step."""
    text = (release_dir / "release.yaml").read_text()
    canary = "    - name: canary-v2\n      rollout: {file: shop-v2.yaml}\n"
    contract = "    - name: contract\n      complete: {migration: 0001_full_name, database: shop}\n"
    text = text.replace(canary, "").replace(contract, "") + contract + canary
    (release_dir / "release.yaml").write_text(text)
    code, _, stderr = plan(release_dir / "release.yaml")
    assert code == 2
    assert (
        "steps.12 (contract): completes 0001_full_name before rollout shop (step 13) moves to code for it: "
        "the old schema would go while the old code still serves" in " ".join(stderr.split())
    )


def test_a_rollout_whose_schema_no_migrate_provides_is_refused(release_dir: Path) -> None:
    """Without the migrate step, the canary's requiresSchema names a schema nothing provides: exit 2."""
    text = (release_dir / "release.yaml").read_text()
    text = text.replace(
        "    - name: expand\n      migrate: {file: 0001_full_name.yaml, database: shop, batchSize: 20000}\n",
        "",
    )
    (release_dir / "release.yaml").write_text(text)
    code, _, stderr = plan(release_dir / "release.yaml")
    assert code == 2
    flat = " ".join(stderr.split())
    assert (
        "steps.0 (canary-v2): the revision requires schema 0001_full_name, which no earlier migrate step provides"
        in flat
    )
    assert (
        "steps.12 (contract): completes migration 0001_full_name, which no earlier migrate step starts"
        in flat
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("migrate: {file: 0001_full_name.yaml", "migrate: {file: missing.yaml"),
            "steps.0.migrate.file: cannot read",
        ),
        (
            ("database: shop, batchSize", "database: other, batchSize"),
            "steps.0.migrate.database: names no database of spec.databases (shop)",
        ),
        (
            ("wait: {duration: 10m}", "wait: {duration: 10m}\n      approve: {}"),
            "steps.5: a step needs exactly one of",
        ),
        (
            ("stage: beta}", "stage: beta, enabled: true}"),
            "steps.4.flag: a flag step needs exactly one of enabled, stage, advance",
        ),
        (("name: sign-off", "name: beta"), "steps.12.name: step name 'beta' is used twice"),
        (("kind: Release", "kind: Releases"), "expected a Release document"),
        (
            ("{urlFromEnv: SHOP_DATABASE_URL}", "{urlFromEnv: SHOP_DATABASE_URL, url: x}"),
            "spec.databases.shop: a database needs exactly one of url, urlFromEnv",
        ),
    ],
)
def test_malformed_releases_exit_2_naming_the_field(
    release_dir: Path, change: tuple[str, str], message: str
) -> None:
    """Each malformed release is refused with exit 2 and a message naming the field."""
    path = release_dir / "release.yaml"
    old, new = change
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    code, _, stderr = plan(path)
    assert code == 2
    assert message in " ".join(stderr.split())


def test_a_broken_rollout_file_is_named_with_its_step(release_dir: Path) -> None:
    """A problem inside a file a step names is reported under that step's file field."""
    (release_dir / "shop-v2.yaml").write_text(
        (release_dir / "shop-v2.yaml").read_text().replace("replicas: 3", "replicas: lots")
    )
    code, _, stderr = plan(release_dir / "release.yaml")
    assert code == 2
    assert "steps.1.rollout.file:" in stderr
    assert "spec.replicas" in stderr
