"""Official Java SDKs against a real ``gapless flags serve``: unleash-client-java and OpenFeature's OFREP provider.

``java/`` (a Maven project; versions pinned in its pom.xml) is compiled once per session into a temporary
directory, its dependencies coming from Maven Central into Maven's own repository outside this one. Its
answers must be gapless's Python SDK's for the same flags and contexts; a streaming Unleash client must
see a kill switch thrown with the gapless CLI.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.flags_sdks.conftest import exclusive, missing
from tests.flags_sdks.harness import assert_same_answers, seconds_to_see_kill
from tests.flags_sdks.test_python_sdks import shop
from tests.flags_service.test_delivery import ServiceProcess

pytestmark = pytest.mark.slow
__all__ = ["shop"]  # the fixture, shared with the Python SDKs' test

JAVA_DIR = Path(__file__).resolve().parent / "java"


@pytest.fixture(scope="session")
def java_driver(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``java -cp ... flagsdks.Main``, compiled by Maven into a temporary directory."""
    mvn, java = shutil.which("mvn"), shutil.which("java")
    if mvn is None or java is None:
        missing("mvn and java are needed for the Java SDKs (Java 17, Maven 3)")
    build = tmp_path_factory.mktemp("java")
    classpath = build / "classpath.txt"
    with exclusive("maven"):  # one download into ~/.m2 at a time
        result = subprocess.run(
            [
                str(mvn),
                "-q",
                "-B",
                "compile",
                "dependency:build-classpath",
                f"-Dmdep.outputFile={classpath}",
                f"-Dflagsdks.build={build / 'target'}",
            ],
            cwd=JAVA_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if result.returncode != 0:
        missing(
            f"mvn compile of tests/flags_sdks/java failed: {(result.stdout + result.stderr).strip()[-500:]}"
        )
    cp = f"{build / 'target' / 'classes'}:{classpath.read_text().strip()}"
    return [str(java), "-cp", cp, "flagsdks.Main"]


def test_java_sdks_answer_as_gapless(java_driver: list[str], shop: tuple[ServiceProcess, str, str]) -> None:
    """unleash-client-java and the OFREP provider (Java) give gapless's answers for 2,000 contexts x 6 flags."""
    svc, token, _ = shop
    assert_same_answers(
        java_driver, JAVA_DIR, svc, token, seed=37, sdk="unleash-java-sdk:12.2.3", omitted={"operators"}
    )


def test_kill_switch_reaches_streaming_java_sdk(
    java_driver: list[str], shop: tuple[ServiceProcess, str, str]
) -> None:
    """A streaming unleash-client-java sees ``gapless flags kill`` within seconds."""
    svc, token, admin_token = shop
    assert seconds_to_see_kill(java_driver, JAVA_DIR, svc, token, admin_token) < 5
