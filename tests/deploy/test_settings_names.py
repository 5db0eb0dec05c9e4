"""The name collection the other checks rely on, and that it notices an unknown setting."""

from __future__ import annotations

from tests.deploy.conftest import ALL_ENV_NAMES, env_names
from tusk_repo.config import RepoSettings
from tusk_scheduler.config import SchedulerSettings


def test_prefixed_and_aliased_names_are_both_collected() -> None:
    repo = env_names(RepoSettings)
    assert {"TUSK_DATABASE_URL", "TUSK_KAFKA_BOOTSTRAP", "TUSK_REPO_PORT"} <= repo
    assert "TUSK_PORT" not in repo  # aliased: only the alias is read
    assert "TUSK_RUNNER" in env_names(SchedulerSettings)
    assert "TUSK_RUNNER" not in repo


def test_a_renamed_setting_is_unknown() -> None:
    assert "TUSK_KAFKA_BOOTSTRAP_SERVERS" not in ALL_ENV_NAMES
    assert "TUSK_S3_ENDPOINT" not in ALL_ENV_NAMES
