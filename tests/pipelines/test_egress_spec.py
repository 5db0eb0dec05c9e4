"""The ``egress`` field: its forms as Pachyderm writes them, what is refused, what only warned."""

from __future__ import annotations

import json

import pytest

from tusk.errors import InvalidArgument
from tusk.pipelines.compat import spec_warnings
from tusk.pipelines.spec import load_spec


def spec(egress: object) -> bytes:
    return json.dumps(
        {
            "pipeline": {"name": "out"},
            "input": {"pfs": {"repo": "raw"}},
            "transform": {"cmd": ["true"]},
            "egress": egress,
        }
    ).encode()


@pytest.mark.parametrize(
    "egress",
    [{"URL": "s3://bucket/some/dir"}, {"objectStorage": {"url": "s3://bucket/some/dir/"}}],
)
def test_both_forms_name_the_bucket_and_prefix(egress: object) -> None:
    loaded = load_spec(spec(egress))
    assert loaded.egress is not None
    assert loaded.egress.s3_target == ("bucket", "some/dir")
    assert spec_warnings(loaded) == []


def test_a_bucket_without_prefix() -> None:
    loaded = load_spec(spec({"URL": "s3://bucket"}))
    assert loaded.egress is not None
    assert loaded.egress.s3_target == ("bucket", "")


@pytest.mark.parametrize(
    ("egress", "message"),
    [
        ({}, "set exactly one of URL"),
        ({"URL": "s3://a/b", "object_storage": {"url": "s3://c/d"}}, "set exactly one of URL"),
        ({"URL": "bucket/dir"}, "is not a URL such as s3://bucket/dir"),
    ],
)
def test_refusals_name_the_field(egress: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match="egress") as caught:
        load_spec(spec(egress))
    assert message in caught.value.message


def test_other_targets_are_warned_about() -> None:
    gcs = load_spec(spec({"URL": "gs://bucket/dir"}))
    assert [w.split(":")[0] for w in spec_warnings(gcs)] == ["egress.URL"]
    assert "only s3:// egress is implemented" in spec_warnings(gcs)[0]
    sql = load_spec(spec({"sql_database": {"url": "snowflake://u@a/db", "secret": SECRET}}))
    assert [w.split(":")[0] for w in spec_warnings(sql)] == ["egress.sql_database.url"]
    assert (
        "snowflake:// is not written to: Snowflake runs only as a hosted service"
        in (spec_warnings(sql)[0])
    )
    assert not sql.egress.sql_database.is_loaded  # type: ignore[union-attr]
    other = load_spec(spec({"sql_database": {"url": "sqlserver://u@h/db", "secret": SECRET}}))
    assert "sqlserver:// databases are not written to" in spec_warnings(other)[0]


SECRET = {"name": "egress-db", "key": "PACHYDERM_SQL_PASSWORD"}


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://egress@db.example:5432/warehouse?sslmode=require",
        "postgres://egress@db.example/warehouse",
        "mysql://egress@db.example:3306/warehouse",
    ],
)
def test_sql_egress_to_postgresql_and_mysql_is_applied(url: str) -> None:
    loaded = load_spec(
        spec(
            {
                "sqlDatabase": {
                    "url": url,
                    "fileFormat": {"type": "JSON", "columns": ["id", "name"]},
                    "secret": SECRET,
                }
            }
        )
    )
    assert loaded.egress is not None
    sql = loaded.egress.sql_database
    assert sql is not None
    assert sql.is_loaded
    assert (sql.file_format.kind, sql.file_format.columns) == ("JSON", ("id", "name"))
    assert spec_warnings(loaded) == []


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ({"url": "postgresql://u@h/db"}, "egress.sql_database.secret: required"),
        (
            {"url": "postgresql://u:hunter2@h/db", "secret": SECRET},
            "egress.sql_database.url: holds a password: put it in a secret",
        ),
        ({"url": "db.example/warehouse", "secret": SECRET}, "egress.sql_database.url: "),
        (
            {"url": "mysql://u@h/db?tls=true", "secret": SECRET},
            "egress.sql_database.url: mysql:// URLs take no options after '?'",
        ),
        (
            {"url": "postgresql://u@h/db", "secret": {"name": "Bad_Name", "key": "k"}},
            "egress.sql_database.secret.name: 'Bad_Name' is not a Kubernetes secret name",
        ),
        (
            {"url": "postgresql://u@h/db", "secret": SECRET, "file_format": {"type": "XML"}},
            "egress.sql_database.file_format.type: ",
        ),
    ],
)
def test_sql_egress_refusals_name_the_field(sql: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        load_spec(spec({"sql_database": sql}))
    assert message in caught.value.message
