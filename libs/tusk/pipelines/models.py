"""The pipeline spec's models, with Pachyderm's field names.

Models validate what a field can say on its own; :class:`PipelineSpec` then checks what depends
on context (``join_on`` only inside a join, names unique within a datum, requests within
limits …). Checks against other pipelines and repos are :mod:`tusk.pipelines.graph`'s; turning
text into a spec, with every problem named by its field, is :mod:`tusk.pipelines.loading`'s.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import blake3
from croniter import CroniterBadDateError, CroniterError, croniter
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake

from tusk.errors import InvalidArgument
from tusk.paths import (
    DEFAULT_PROJECT,
    MAX_QUALIFIED_NAME_LENGTH,
    NAME_RE,
    qualified_name,
    split_project,
    validate_branch_name,
)
from tusk.pipelines.glob import Glob, GlobError, parse_glob, validate_key_template
from tusk.pipelines.units import format_duration, parse_duration, parse_quantity

Loc = tuple[str | int, ...]

OUTPUT_NAME = "out"  # /pfs/out is where the user code writes


class SpecErrors(ValueError):
    """Problems found by a model validator, each at a location relative to that model."""

    def __init__(self, errors: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{format_loc(loc) or '(spec)'}: {msg}" for loc, msg in errors))
        self.errors = errors


def format_loc(loc: Iterable[str | int]) -> str:
    """``("input", "cross", 1, "pfs")`` → ``input.cross[1].pfs``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


# --- field types ---------------------------------------------------------------------------


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f"invalid name {value!r}: use 1-63 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _qualified(value: str) -> str:
    try:
        return qualified_name("repo", value)
    except InvalidArgument as exc:
        raise ValueError(exc.message) from None


def _branch(value: str) -> str:
    try:
        return validate_branch_name(value)
    except InvalidArgument as exc:
        raise ValueError(exc.message) from None


def _duration(value: object) -> object:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValueError("the duration must be positive")
        return value
    raise ValueError(f"expected a duration such as '30s', '5m' or '1h', got {value!r}")


_BYTE_SUFFIX = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTPE])B", re.IGNORECASE)


def _quantity(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a Kubernetes quantity such as '500m' or '2Gi', got {value!r}")
    text = str(value)
    # "256MB", as Pachyderm's examples write memory, is Kubernetes' 256M (decimal units).
    bytes_form = _BYTE_SUFFIX.fullmatch(text.strip())
    if bytes_form is not None:
        unit = bytes_form.group(2).upper()
        text = bytes_form.group(1) + ("k" if unit == "K" else unit)
    parse_quantity(text)
    return text


def _gpu_count(value: object) -> object:
    if isinstance(value, Mapping):
        # Pachyderm's form, {type: nvidia.com/gpu, number: 1}: the number is what counts here;
        # the type is kept apart (see Resources._gpu_type).
        if "number" not in value:
            raise ValueError("give the number of GPUs, e.g. 1 or {type: nvidia.com/gpu, number: 1}")
        value = value["number"]
    text = _quantity(value)
    assert isinstance(text, str)
    number = parse_quantity(text)
    if number != number.to_integral_value():
        raise ValueError(f"GPUs are whole devices: {text!r} is not a whole number")
    return text


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?i?B?)\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def _byte_size(value: object) -> object:
    """``"3KB"``, ``"1MiB"``, ``2048`` → a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a size such as '1MB', '512KiB' or 2048, got {value!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    base = 1024 if "i" in unit else 1000
    letter = unit[:1] if unit[:1] != "b" else ""
    size = int(number * (base ** ("kmgtp".index(letter) + 1) if letter else 1))
    if size <= 0:
        raise ValueError(f"the size must be positive, got {value!r}")
    return size


Name = Annotated[str, AfterValidator(_name)]
# A repo, optionally qualified by its project (``p/images``); ``default/x`` becomes ``x``.
QualifiedRepo = Annotated[str, AfterValidator(_qualified)]
ByteSize = Annotated[int, BeforeValidator(_byte_size)]
BranchName = Annotated[str, AfterValidator(_branch)]
Duration = Annotated[
    timedelta, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)
]
Quantity = Annotated[str, BeforeValidator(_quantity)]
GpuCount = Annotated[str, BeforeValidator(_gpu_count)]
StrictPositive = Annotated[int, Field(ge=1, strict=True)]
# Caps that keep one spec from asking for what no machine gives: each is far above real use.
MAX_PARALLELISM = 1000
MAX_DATUM_TRIES = 100
MAX_INPUT_DEPTH = 32

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


def _lower_camel(name: str) -> str:
    """``join_on`` → ``joinOn``: the protojson names pachctl also accepts."""
    camel = to_camel(name)
    return camel[:1].lower() + camel[1:]


# Field names are read in snake_case or lowerCamelCase (pachctl reads both); the spec is
# stored, shown and reported in snake_case.
_DIALECT = ConfigDict(
    frozen=True,
    extra="forbid",
    alias_generator=_lower_camel,
    populate_by_name=True,
    loc_by_alias=False,
)


class _Model(BaseModel):
    model_config = _DIALECT

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            # protojson reads null as "not set" (jsonnet templates write `else null`).
            data = {
                k: v
                for k, v in data.items()
                if v is not None or not isinstance(k, str) or to_snake(k) not in cls.model_fields
            }
            twice = [
                key
                for key in data
                if isinstance(key, str)
                and key != to_snake(key)
                and to_snake(key) in data
                and to_snake(key) in cls.model_fields
            ]
            if twice:
                raise SpecErrors(
                    [
                        ((to_snake(key),), f"given twice, as {to_snake(key)!r} and {key!r}")
                        for key in twice
                    ]
                )
        return data


# --- the models ----------------------------------------------------------------------------


class ProjectRef(_Model):
    name: Name


class PipelineRef(_Model):
    name: Name
    project: ProjectRef | None = None


class BranchTrigger(_Model):
    """Pachyderm's ``pfs.trigger``: the pipeline runs on the input branch only once ``branch``
    (default: master) has grown by ``size`` bytes or ``commits`` commits since the last run,
    when ``cron_spec`` ticks, or — ``rate_limit_spec`` — when a commit finishes after a tick of
    that schedule that came after the input branch's head finished (so at most once per
    period); with ``all``, every condition set must hold."""

    branch: BranchName | None = None
    all: bool = False
    cron_spec: str | None = None
    size: ByteSize | None = None
    commits: StrictPositive | None = None
    rate_limit_spec: str | None = None

    @field_validator("cron_spec", "rate_limit_spec")
    @classmethod
    def _valid_schedule(cls, value: str | None) -> str | None:
        if value is not None:
            _schedule(value)
        return value

    def next_tick(self, after: datetime) -> datetime | None:
        """When ``cron_spec`` next fires after ``after``; None without a ``cron_spec``."""
        return next_tick(self.cron_spec, after) if self.cron_spec is not None else None

    @model_validator(mode="after")
    def _some_condition(self) -> BranchTrigger:
        conditions = (self.cron_spec, self.rate_limit_spec, self.size, self.commits)
        if all(c is None for c in conditions):
            raise ValueError(
                "set size, commits, cron_spec or rate_limit_spec: when the pipeline should run"
            )
        return self

    def rate_limit_passed(self, head_finished: datetime | None, finished: datetime) -> bool:
        """``rate_limit_spec``'s condition: a tick of it falls after ``head_finished`` (when
        the input branch's head finished; None: it has none) and before ``finished``."""
        if self.rate_limit_spec is None or head_finished is None:
            return True
        if finished.tzinfo is None:
            finished = finished.replace(tzinfo=UTC)
        return next_tick(self.rate_limit_spec, head_finished) < finished


class PfsInput(_Model):
    """A repo's branch, split into datums by ``glob``; mounted at ``/pfs/<name>``."""

    name: Name  # defaults to the repo (without its project)
    # Qualified when the spec is read: the input's ``project``, else the pipeline's.
    repo: QualifiedRepo
    branch: BranchName = "master"
    glob: str = "/"
    join_on: str | None = None
    group_by: str | None = None
    outer_join: bool = False
    project: Name | None = None
    s3: bool = False
    lazy: bool = False
    empty_files: bool = False
    trigger: BranchTrigger | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_repo(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("name") is None:
            repo = data.get("repo")
            if isinstance(repo, str) and NAME_RE.fullmatch(bare := repo.rpartition("/")[2]):
                return {**data, "name": bare}
        return data

    @field_validator("glob")
    @classmethod
    def _valid_glob(cls, value: str) -> str:
        try:
            parse_glob(value)
        except GlobError as exc:
            raise ValueError(f"invalid glob {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _keys_use_the_glob_groups(self) -> PfsInput:
        errors: list[tuple[Loc, str]] = []
        for field in ("join_on", "group_by"):
            template = getattr(self, field)
            if template is not None:
                try:
                    validate_key_template(template, self.parsed_glob)
                except GlobError as exc:
                    errors.append(((field,), str(exc)))
        if errors:
            raise SpecErrors(errors)
        return self

    @property
    def parsed_glob(self) -> Glob:
        return _parsed_glob(self.glob)

    @property
    def key(self) -> str:
        """What the job's input commits are keyed by: the name, qualified by the input's own
        ``project`` when it names one, so that union branches mounting repos of two projects
        at one ``/pfs/<name>`` (as Pachyderm allows) keep their commits apart."""
        if self.project in (None, DEFAULT_PROJECT):
            return self.name
        return f"{self.project}/{self.name}"


@functools.lru_cache(maxsize=1024)
def _parsed_glob(pattern: str) -> Glob:
    return parse_glob(pattern)


_DESCRIPTORS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


class CronInput(_Model):
    """Ticks on a schedule. Pachyderm's convention: the ticks are committed to a repo named
    ``<pipeline>_<name>`` (see :func:`cron_repo_name`), which the pipeline reads with glob ``/``.
    ``overwrite`` replaces the previous tick's file instead of adding one per tick."""

    name: Name
    spec: str
    overwrite: bool = False
    start: datetime | None = None

    @field_validator("spec")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        _schedule(value)
        return value

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # a start without a zone is read as UTC
        return value

    @property
    def interval(self) -> timedelta | None:
        """The period of an ``@every`` schedule; None for a cron expression."""
        return _schedule(self.spec)

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (and after ``start``, when set).

        ``@every D`` ticks at ``start + k·D`` (k ≥ 1) when ``start`` is set, else at
        ``after + D``; a cron expression at its next matching time, in UTC.
        """
        return next_tick(self.spec, after, start=self.start)


def next_tick(spec: str, after: datetime, *, start: datetime | None = None) -> datetime:
    """The first tick of the schedule ``spec`` (cron expression, descriptor or ``@every D``)
    strictly after ``after`` and after ``start`` when set, in UTC."""
    if after.tzinfo is None:
        after = after.replace(tzinfo=UTC)
    interval = _schedule(spec)
    if interval is not None:
        if start is None:
            return after + interval
        periods = max(0, math.floor((after - start) / interval)) + 1
        return start + periods * interval
    base = max(after, start) if start is not None else after
    tick: datetime = croniter(spec.strip(), base.astimezone(UTC)).get_next(datetime)
    return tick


def _schedule(spec: str) -> timedelta | None:
    text = spec.strip()
    if text.startswith("@every"):
        period = text[len("@every") :].strip()
        if not period:
            raise ValueError("'@every' needs a period, e.g. '@every 60s' or '@every 1h30m'")
        try:
            return parse_duration(period)
        except ValueError as exc:
            raise ValueError(f"invalid schedule {spec!r}: {exc}") from None
    if text.startswith("@"):
        if text not in _DESCRIPTORS:
            raise ValueError(
                f"invalid schedule {spec!r}: use '@every <period>' or one of "
                + ", ".join(sorted(_DESCRIPTORS))
            )
        return None
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"invalid cron expression {spec!r}: it needs 5 fields (minute hour day-of-month "
            f"month day-of-week), not {len(fields)}; or use '@every 60s', '@daily' …"
        )
    try:
        croniter(text, _EPOCH).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"cron expression {spec!r} never matches a date") from None
    except (CroniterError, ValueError, KeyError) as exc:
        raise ValueError(
            f"invalid cron expression {spec!r} ({exc}); e.g. '0 3 * * 1' is 03:00 every Monday"
        ) from None
    return None


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


INPUT_KINDS = ("pfs", "cross", "union", "join", "group", "cron")
InputKind = Literal["pfs", "cross", "union", "join", "group", "cron"]
Inputs = Annotated[tuple["Input", ...], Field(min_length=1)]


class Input(_Model):
    """Exactly one of the fields is set."""

    pfs: PfsInput | None = None
    cross: Inputs | None = None
    union: Inputs | None = None
    join: Inputs | None = None
    group: Inputs | None = None
    cron: CronInput | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Input:
        present = [kind for kind in INPUT_KINDS if getattr(self, kind) is not None]
        if len(present) != 1:
            found = f" (found {', '.join(present)})" if present else ""
            raise ValueError(f"set exactly one of {', '.join(INPUT_KINDS)}{found}")
        return self

    @property
    def kind(self) -> InputKind:
        for kind in INPUT_KINDS:
            if getattr(self, kind) is not None:
                return kind  # type: ignore[return-value]
        raise AssertionError("validated to have one kind")  # pragma: no cover

    @property
    def children(self) -> tuple[Input, ...]:
        """The inputs combined by a cross, union, join or group; () for pfs and cron."""
        return self.cross or self.union or self.join or self.group or ()

    def walk(self, loc: Loc = ("input",)) -> Iterator[tuple[Loc, Input]]:
        """Every input in the tree, depth first, with its location in the spec."""
        yield loc, self
        kind = self.kind
        for i, child in enumerate(self.children):
            yield from child.walk((*loc, kind, i))

    def pfs_inputs(self) -> list[PfsInput]:
        return [i.pfs for _, i in self.walk() if i.pfs is not None]

    def cron_inputs(self) -> list[CronInput]:
        return [i.cron for _, i in self.walk() if i.cron is not None]


class Secret(_Model):
    """A Kubernetes secret: one ``key`` as ``env_var``, and/or the whole secret at
    ``mount_path``."""

    name: str
    key: str | None = None
    env_var: str | None = None
    mount_path: str | None = None

    @model_validator(mode="after")
    def _usable(self) -> Secret:
        errors: list[tuple[Loc, str]] = []
        if not _SECRET_NAME.fullmatch(self.name):
            errors.append((("name",), f"{self.name!r} is not a Kubernetes secret name"))
        if self.key is not None and not _SECRET_KEY.fullmatch(self.key):
            errors.append((("key",), f"{self.key!r} is not a secret key"))
        if self.env_var is not None:
            if not _ENV_NAME.fullmatch(self.env_var):
                errors.append((("env_var",), f"{self.env_var!r} is not an environment variable"))
            if self.key is None:
                errors.append((("key",), "required with env_var: which key of the secret"))
        if self.mount_path is not None and not self.mount_path.startswith("/"):
            errors.append((("mount_path",), "must be an absolute path"))
        if self.env_var is None and self.mount_path is None:
            errors.append(((), "set env_var (with key) or mount_path, or both"))
        if errors:
            raise SpecErrors(errors)
        return self


class Transform(_Model):
    model_config = ConfigDict(**_DIALECT, coerce_numbers_to_str=True)

    image: str | None = None  # the Kubernetes runner needs it; the local runner does not
    cmd: tuple[str, ...] = Field(min_length=1)
    stdin: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    secrets: tuple[Secret, ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    accept_return_code: tuple[int, ...] = ()
    err_cmd: tuple[str, ...] = ()
    err_stdin: tuple[str, ...] = ()
    datum_batching: bool = False
    working_dir: str | None = None
    user: str | None = None
    debug: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Transform:
        errors: list[tuple[Loc, str]] = []
        if self.image is not None and not self.image.strip():
            errors.append((("image",), "is empty; leave it out for the local runner"))
        if not self.cmd[0].strip():
            errors.append((("cmd", 0), "the program to run is empty"))
        # A NUL cannot pass to exec(); the worker would fail on every try.
        for field, values in (("cmd", self.cmd), ("stdin", self.stdin)):
            for i, value in enumerate(values):
                if "\x00" in value:
                    errors.append(((field, i), "contains a NUL character"))
        for key, value in self.env.items():
            if "\x00" in value:
                errors.append((("env", key), "contains a NUL character"))
        for key in self.env:
            if not _ENV_NAME.fullmatch(key):
                errors.append((("env", key), f"{key!r} is not a valid environment variable name"))
        for i, secret in enumerate(self.secrets):
            if secret.env_var is not None and secret.env_var in self.env:
                errors.append((("secrets", i, "env_var"), f"{secret.env_var!r} is also set in env"))
        if errors:
            raise SpecErrors(errors)
        return self


class ParallelismSpec(_Model):
    constant: Annotated[StrictPositive, Field(le=MAX_PARALLELISM)] = 1


class Resources(_Model):
    """Kubernetes quantities: ``cpu: "500m"``, ``memory: 2Gi``, ``gpu: 1`` (or Pachyderm's
    ``gpu: {type: nvidia.com/gpu, number: 1}``), ``disk: 10Gi``."""

    cpu: Quantity | None = None
    memory: Quantity | None = None
    gpu: GpuCount | None = None
    gpu_type: str | None = None  # the device plugin's resource name; nvidia.com/gpu if unset
    disk: Quantity | None = None

    @model_validator(mode="before")
    @classmethod
    def _gpu_type(cls, data: Any) -> Any:
        gpu = data.get("gpu") if isinstance(data, Mapping) else None
        if isinstance(gpu, Mapping) and isinstance(gpu.get("type"), str):
            return {**data, "gpu": gpu, "gpu_type": gpu["type"]}
        return data


class Service(_Model):
    """A pipeline that serves: its command runs on, reachable at ``internal_port`` (and, on
    Kubernetes, ``external_port`` of a Service)."""

    internal_port: Annotated[int, Field(ge=1, le=65535, strict=True)]
    external_port: Annotated[int, Field(ge=1, le=65535, strict=True)] | None = None
    type: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)


class Spout(_Model):
    """A long-running command that commits into the output repo by itself (no input)."""

    overwrite: bool = False
    service: Service | None = None


class SecretKeyRef(_Model):
    """One key of a Kubernetes secret (the local runner: a file ``<secrets dir>/<name>/<key>``)."""

    name: str
    key: str

    @model_validator(mode="after")
    def _usable(self) -> SecretKeyRef:
        errors: list[tuple[Loc, str]] = []
        if not _SECRET_NAME.fullmatch(self.name):
            errors.append((("name",), f"{self.name!r} is not a Kubernetes secret name"))
        if not _SECRET_KEY.fullmatch(self.key):
            errors.append((("key",), f"{self.key!r} is not a secret key"))
        if errors:
            raise SpecErrors(errors)
        return self


class FileFormat(_Model):
    """How the files of an SQL egress are read: ``CSV`` (without ``columns``: no header, the
    values in the table's column order; with ``columns``: a header naming them) or ``JSON``
    (one object per line; ``columns`` picks the fields)."""

    type: Literal["CSV", "JSON", "csv", "json"] = "CSV"
    columns: tuple[str, ...] = ()

    @property
    def kind(self) -> Literal["CSV", "JSON"]:
        return "JSON" if self.type.upper() == "JSON" else "CSV"


POSTGRES_SCHEMES = ("postgresql", "postgres")
MYSQL_SCHEMES = ("mysql",)  # MySQL and MariaDB, as Pachyderm names them


class SqlEgress(_Model):
    """Pachyderm's SQL egress: each top-level directory of the output commit is a table, whose
    rows are replaced by its files' rows. The password comes from ``secret``, never the URL."""

    url: str
    file_format: FileFormat = FileFormat()
    secret: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _usable(self) -> SqlEgress:
        errors: list[tuple[Loc, str]] = []
        match = re.fullmatch(r"([a-z][a-z0-9+.-]*)://([^/\s@]*@)?[^/\s@]+(/\S*)?", self.url)
        if match is None:
            why = f"{self.url!r} is not a URL such as postgresql://user@host:5432/database"
            errors.append((("url",), why))
        elif match.group(2) and ":" in match.group(2):
            why = "holds a password: put it in a secret named in egress.sql_database.secret"
            errors.append((("url",), why))
        elif self.scheme in MYSQL_SCHEMES and "?" in self.url:
            why = "mysql:// URLs take no options after '?' (mysql://user@host:3306/database)"
            errors.append((("url",), why))
        if self.secret is None:
            why = "required: the database password is read from this secret (name, key)"
            errors.append((("secret",), why))
        if errors:
            raise SpecErrors(errors)
        return self

    @property
    def scheme(self) -> str:
        return self.url.partition("://")[0]

    @property
    def is_loaded(self) -> bool:
        """The scheduler writes to this database (PostgreSQL, MySQL or MariaDB)."""
        return self.scheme in POSTGRES_SCHEMES + MYSQL_SCHEMES


class ObjectStorageEgress(_Model):
    url: str


class Egress(_Model):
    """Where each finished output commit is copied: an object store URL (``URL``, or
    ``object_storage.url`` as Pachyderm 2 writes it) or a SQL database."""

    url: str | None = Field(default=None, validation_alias=AliasChoices("url", "URL"))
    object_storage: ObjectStorageEgress | None = None
    sql_database: SqlEgress | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Egress:
        targets = [self.url, self.object_storage, self.sql_database]
        if sum(t is not None for t in targets) != 1:
            raise ValueError(
                "set exactly one of URL (e.g. s3://bucket/dir), object_storage.url or "
                "sql_database"
            )
        url = self.target_url
        if url is not None and not re.fullmatch(r"[a-z][a-z0-9+.-]*://[^/\s]+(/\S*)?", url):
            raise ValueError(f"egress URL {url!r} is not a URL such as s3://bucket/dir")
        return self

    @property
    def target_url(self) -> str | None:
        """The object store URL the output is copied to; None for SQL egress."""
        if self.object_storage is not None:
            return self.object_storage.url
        return self.url

    @property
    def s3_target(self) -> tuple[str, str] | None:
        """(bucket, key prefix) of an ``s3://`` target; None for any other."""
        url = self.target_url
        if url is None or not url.startswith("s3://"):
            return None
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return bucket, prefix.strip("/")


class SchedulingSpec(_Model):
    node_selector: dict[str, str] = Field(default_factory=dict)
    priority_class_name: str | None = None


class Determined(_Model):
    workspaces: tuple[str, ...] = ()


class Metadata(_Model):
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class PipelineSpec(_Model):
    pipeline: PipelineRef
    description: str | None = None
    input: Input | None = None  # None only for a spout
    transform: Transform
    parallelism_spec: ParallelismSpec = ParallelismSpec()
    resource_requests: Resources | None = None
    resource_limits: Resources | None = None
    datum_tries: Annotated[StrictPositive, Field(le=MAX_DATUM_TRIES)] = 3
    datum_timeout: Duration | None = None
    job_timeout: Duration | None = None
    output_branch: BranchName = "master"
    autoscaling: bool = False
    egress: Egress | None = None
    spout: Spout | None = None
    service: Service | None = None
    s3_out: bool = False
    scheduling_spec: SchedulingSpec | None = None
    reprocess_spec: Literal["until_success", "every_job"] = "until_success"
    metadata: Metadata | None = None
    determined: Determined | None = None
    salt: str | None = None
    """Part of every datum's identity: a new salt (``pipeline update --reprocess``) makes every
    datum new; otherwise datums keep their identity across versions."""

    @model_validator(mode="before")
    @classmethod
    def _inputs_in_the_project(cls, data: Any) -> Any:
        """Each pfs input's repo qualified by its ``project``, else the pipeline's (as in
        Pachyderm), so that everything downstream reads ``p/images``; its name (``/pfs/…``)
        stays the bare repo name."""
        if not isinstance(data, Mapping) or not isinstance(data.get("input"), Mapping):
            return data
        project = _project_of(data.get("pipeline"))
        if project is None:
            return data
        return {**data, "input": _qualify_inputs(data["input"], project)}

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        if self.input is not None and _input_depth(self.input) > MAX_INPUT_DEPTH:
            raise SpecErrors(
                [(("input",), f"inputs are nested more than {MAX_INPUT_DEPTH} levels deep")]
            )
        errors = _check_name(self) + _check_kind(self)
        if self.input is not None:
            errors += _check_inputs(self)
        errors += _check_resources(self)
        if self.description is not None and "\x00" in self.description:
            errors.append((("description",), "contains a NUL character"))
        if errors:
            raise SpecErrors(errors)
        return self

    @property
    def project(self) -> str:
        return self.pipeline.project.name if self.pipeline.project else DEFAULT_PROJECT

    @property
    def name(self) -> str:
        """The pipeline's qualified name (``p/edges``; ``edges`` in the default project),
        which is also its output repo's."""
        if self.project == DEFAULT_PROJECT:
            return self.pipeline.name
        return f"{self.project}/{self.pipeline.name}"

    @property
    def exposed(self) -> Service | None:
        """The port the pipeline's command serves on: a service pipeline's ``service``, or a
        spout's ``spout.service`` (a spout that also takes data in, e.g. webhooks)."""
        if self.service is not None:
            return self.service
        return self.spout.service if self.spout is not None else None

    def pfs_inputs(self) -> list[PfsInput]:
        """The pfs inputs as written, depth first (cron inputs not included)."""
        return self.input.pfs_inputs() if self.input is not None else []

    def cron_inputs(self) -> list[CronInput]:
        return self.input.cron_inputs() if self.input is not None else []

    def input_repos(self) -> list[str]:
        """The repos the pfs inputs read (which must exist), sorted, without duplicates."""
        return sorted({p.repo for p in self.pfs_inputs()})

    def cron_repos(self) -> list[str]:
        """The repos holding the cron ticks (which the trigger service creates)."""
        return sorted(cron_repo_name(self.name, c.name) for c in self.cron_inputs())

    def resolved_input(self) -> Input:
        """The input tree with each cron input replaced by its pfs view: what datums read."""
        if self.input is None:
            raise InvalidArgument(f"pipeline {self.name!r} is a spout: it has no input")
        return _resolve_cron(self.input, self.name)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data that :func:`load_spec` reads back to an equal spec."""
        return self.model_dump(mode="json", exclude_none=True)

    def datum_identity(self) -> str:
        """What a datum's result depends on besides its inputs: the transform (command, image,
        env, secrets), the input tree, where outputs go and the salt. Versions that share it
        share processed datums, so changing parallelism, resources, timeouts or the
        description reprocesses nothing; a new salt (``--reprocess``) reprocesses all."""
        relevant = {
            "transform": self.transform.model_dump(
                mode="json", exclude={"debug", "datum_batching", "image_pull_secrets"}
            ),
            "input": self.input.model_dump(mode="json") if self.input is not None else None,
            "output_branch": self.output_branch,
            "s3_out": self.s3_out,
            "salt": self.salt,
        }
        encoded = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
        return str(blake3.blake3(encoded.encode()).hexdigest())


# --- cron inputs as repos ------------------------------------------------------------------


def cron_repo_name(pipeline: str, cron_name: str) -> str:
    """The repo into which a cron input's ticks are committed: ``<pipeline>_<cron name>``."""
    return f"{pipeline}_{cron_name}"


def cron_pfs_input(pipeline: str, cron: CronInput) -> PfsInput:
    """How a cron input is read: its tick repo's master branch, as one datum (glob ``/``)."""
    return PfsInput(
        name=cron.name, repo=cron_repo_name(pipeline, cron.name), branch="master", glob="/"
    )


def cron_tick_path(tick: datetime) -> str:
    """The file a tick writes into the cron repo: its UTC time, e.g. ``/2024-05-06T03:00:00Z``."""
    tick = tick.astimezone(UTC) if tick.tzinfo else tick
    text = tick.strftime("%Y-%m-%dT%H:%M:%S")
    if tick.microsecond:
        text += f".{tick.microsecond:06d}"
    return f"/{text}Z"


def _resolve_cron(node: Input, pipeline: str) -> Input:
    if node.cron is not None:
        return Input(pfs=cron_pfs_input(pipeline, node.cron))
    if node.pfs is not None:
        return node
    return Input.model_validate(
        {node.kind: tuple(_resolve_cron(c, pipeline) for c in node.children)}
    )


# --- context checks ------------------------------------------------------------------------


def _input_depth(root: Input) -> int:
    """How deep cross/union/join/group nest (iteratively: the depth is what is checked)."""
    deepest = 0
    pending = [(root, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_INPUT_DEPTH:
            pending.extend((child, depth + 1) for child in node.children)
    return deepest


def _project_of(pipeline: Any) -> str | None:
    """The project a raw ``pipeline`` field names (``default`` when none); None when it is
    malformed (which the field's own validation then reports)."""
    if not isinstance(pipeline, Mapping):
        return None
    project = pipeline.get("project")
    if project is None:
        return DEFAULT_PROJECT
    if isinstance(project, Mapping):
        project = project.get("name")
    if not isinstance(project, str) or not NAME_RE.fullmatch(project):
        return None
    return project


def _qualify_inputs(node: Mapping[str, Any], project: str) -> Mapping[str, Any]:
    out = dict(node)
    for kind in ("cross", "union", "join", "group"):
        children = node.get(kind)
        if isinstance(children, list):
            out[kind] = [
                _qualify_inputs(c, project) if isinstance(c, Mapping) else c for c in children
            ]
    pfs = node.get("pfs")
    if isinstance(pfs, Mapping) and isinstance(repo := pfs.get("repo"), str) and "/" not in repo:
        own = pfs.get("project")
        if NAME_RE.fullmatch(repo) and (own is None or isinstance(own, str)):
            qualified = f"{own or project}/{repo}"
            out["pfs"] = {"name": repo, **pfs, "repo": qualified}
    return out


def _check_name(spec: PipelineSpec) -> list[tuple[Loc, str]]:
    try:
        split_project("pipeline", f"{spec.project}/{spec.pipeline.name}")
    except InvalidArgument as exc:
        return [(("pipeline", "name"), exc.message)]
    return []


def _check_kind(spec: PipelineSpec) -> list[tuple[Loc, str]]:
    """A spout has no input; every other pipeline needs one."""
    if spec.spout is not None:
        if spec.input is not None:
            return [(("input",), "a spout has no input: it makes its own commits")]
        if spec.service is not None:
            return [(("service",), "a spout's service goes in spout.service")]
        return []
    if spec.input is None:
        return [(("input",), "required (only a spout has no input)")]
    return []


def _check_inputs(spec: PipelineSpec) -> list[tuple[Loc, str]]:
    """Rules that depend on where an input sits, and on the other inputs."""
    errors: list[tuple[Loc, str]] = []
    # A name is one mount point and one entry in the job's input commits, so it may repeat
    # only across union branches (never in one datum) and only for the same repo and branch.
    sources: dict[str, tuple[Loc, str, str]] = {}
    in_one_datum: set[str] = set()  # names already reported as clashing within a datum
    elsewhere: list[tuple[str, Loc, str]] = []

    def claim(name: str, loc: Loc, repo: str, branch: str) -> None:
        if name == OUTPUT_NAME:
            errors.append((loc, f"{OUTPUT_NAME!r} is reserved: the output is at /pfs/out"))
        first = sources.setdefault(name, (loc, repo, branch))
        if first[1:] != (repo, branch):
            message = (
                f"input name {name!r} is already used by {format_loc(first[0])} for "
                f"{first[1]}@{first[2]}; give this input another name"
            )
            elsewhere.append((name, loc, message))

    def visit(node: Input, loc: Loc, parent: InputKind | None) -> set[str]:
        if node.pfs is not None:
            pfs = node.pfs
            here = (*loc, "pfs")
            for field, owner in (
                ("join_on", "join"),
                ("outer_join", "join"),
                ("group_by", "group"),
            ):
                if getattr(pfs, field) not in (None, False) and parent != owner:
                    errors.append(((*here, field), f"only means something inside a {owner}"))
            if parent == "group" and pfs.group_by is None:
                errors.append(
                    ((*here, "group_by"), "required in a group, e.g. '$1' with glob '/(*)/*'")
                )
            if pfs.repo == spec.name:
                errors.append(
                    (
                        (*here, "repo"),
                        f"the pipeline cannot read its own output repo {pfs.repo!r} (a cycle)",
                    )
                )
            claim(pfs.key, (*here, "name"), pfs.repo, pfs.branch)
            return {pfs.name}
        if node.cron is not None:
            cron = node.cron
            repo = cron_repo_name(spec.name, cron.name)
            if len(repo) > MAX_QUALIFIED_NAME_LENGTH:
                errors.append(
                    (
                        (*loc, "cron", "name"),
                        f"the cron repo {repo!r} would be over 63 characters; "
                        "shorten the pipeline or cron name",
                    )
                )
            claim(cron.name, (*loc, "cron", "name"), repo, "master")
            return {cron.name}
        kind = node.kind
        names_per_child = []
        for i, child in enumerate(node.children):
            if kind in ("join", "group") and child.pfs is None:
                errors.append(((*loc, kind, i), f"each input of a {kind} must be a pfs input"))
            names_per_child.append(visit(child, (*loc, kind, i), kind))
        seen: dict[str, int] = {}
        for i, names in enumerate(names_per_child):
            for name in sorted(names):
                if kind != "union" and name in seen:
                    in_one_datum.add(name)
                    errors.append(
                        (
                            (*loc, kind, i),
                            f"input name {name!r} is also used by {kind}[{seen[name]}]: both "
                            f"would be mounted at /pfs/{name}; give one of them another name",
                        )
                    )
                seen.setdefault(name, i)
        return set(seen)

    assert spec.input is not None
    visit(spec.input, ("input",), None)
    errors += [(loc, message) for name, loc, message in elsewhere if name not in in_one_datum]
    return errors


def _check_resources(spec: PipelineSpec) -> list[tuple[Loc, str]]:
    errors: list[tuple[Loc, str]] = []
    requests, limits = spec.resource_requests, spec.resource_limits
    if requests is None or limits is None:
        return errors
    for field in ("cpu", "memory", "gpu"):
        wanted, cap = getattr(requests, field), getattr(limits, field)
        if wanted is not None and cap is not None and parse_quantity(wanted) > parse_quantity(cap):
            errors.append(
                (
                    ("resource_requests", field),
                    f"{wanted} is more than resource_limits.{field} ({cap})",
                )
            )
    return errors
