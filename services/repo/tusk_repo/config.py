from __future__ import annotations

from pydantic import Field

from tusk.objectstore.chunks import DEFAULT_CHUNK_SIZE
from tusk.settings import CommonSettings


class RepoSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=8081, alias="TUSK_REPO_PORT")
    s3_gateway_port: int = Field(
        default=8085,
        ge=0,
        le=65535,
        alias="TUSK_S3_GATEWAY_PORT",
        description="Port of the S3 gateway that `tusk up` serves beside the repo API.",
    )
    chunk_size: int = Field(
        default=DEFAULT_CHUNK_SIZE,
        ge=64 * 1024,
        alias="TUSK_REPO_CHUNK_SIZE",
        description="Files are split into chunks of this many bytes, each stored once.",
    )
    max_file_bytes: int = Field(
        default=1 << 40,
        alias="TUSK_REPO_MAX_FILE_BYTES",
        description="Largest single file a put accepts (413 above it).",
    )
    max_batch_bytes: int = Field(
        default=256 << 20,
        alias="TUSK_REPO_MAX_BATCH_BYTES",
        description="Largest tar body a batch put accepts (413 above it). The body is spooled "
        "to disk past 32 MiB; its files are stored one at a time as they are read.",
    )
    max_batch_expanded_bytes: int = Field(
        default=4 << 30,
        ge=1,
        alias="TUSK_REPO_MAX_BATCH_EXPANDED_BYTES",
        description="Largest total size of the files in one batch put once decompressed (413 "
        "above it): a small .tar.gz can expand a thousandfold.",
    )
    max_batch_files: int = Field(
        default=100_000,
        ge=1,
        alias="TUSK_REPO_MAX_BATCH_FILES",
        description="Most files one batch put may hold (413 above it).",
    )
    max_batch_member_bytes: int = Field(
        default=64 << 20,
        alias="TUSK_REPO_MAX_BATCH_MEMBER_BYTES",
        description="Largest single file inside a batch put; larger files use the streamed put.",
    )
    upload_concurrency: int = Field(
        default=4,
        ge=1,
        alias="TUSK_REPO_UPLOAD_CONCURRENCY",
        description="Chunks of one upload written to the object store at once. Each costs about "
        "twice the chunk size in memory while it is sent (the S3 client copies the body).",
    )
    tree_cache_entries: int = Field(default=2_000_000, alias="TUSK_REPO_TREE_CACHE_ENTRIES")
    outbox_relay: bool = Field(
        default=True,
        alias="TUSK_REPO_OUTBOX_RELAY",
        description="Publish the outbox from this process (off: another process does it).",
    )
    gc_grace_seconds: float = Field(
        default=6 * 3600,
        ge=0,
        alias="TUSK_REPO_GC_GRACE_SECONDS",
        description="Garbage collection spares unreferenced chunks written less than this long "
        "ago: an upload in flight relies on them. Uploads reuse a stored chunk only when it "
        "is younger than half of this, so an upload may last that long.",
    )
    gc_compact_below: float = Field(
        default=0.5,
        ge=0,
        le=1,
        alias="TUSK_REPO_GC_COMPACT_BELOW",
        description="Garbage collection rewrites a pack of small files whose live fraction "
        "(bytes still used / bytes held) is below this into new packs and deletes the old "
        "one (0: never compact; 1: compact every pack with anything unused in it).",
    )
    gc_interval_seconds: float = Field(
        default=3600,
        ge=0,
        alias="TUSK_REPO_GC_INTERVAL_SECONDS",
        description="How often the service collects garbage by itself (0: never; tusk gc "
        "runs it on demand).",
    )
