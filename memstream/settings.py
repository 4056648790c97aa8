"""All configuration in one place, read from the environment (prefix ``MEMSTREAM_``).

Every package receives a ``Settings`` instance from the entry point instead of reading the
environment itself, so tests can run several differently-configured stacks in one process.
"""

import socket
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.limits import Limits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMSTREAM_", extra="ignore")

    # --- auth -------------------------------------------------------------------------------
    root_token: str | None = Field(
        None, description="Bearer token with access to the default project. `dev` generates one when unset."
    )
    default_project: str = Field("default", description="Project the root token acts for.")

    # --- Kafka ------------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (host:port,…).")
    topic_ingest: str = Field("memstream.ingest", description="Commands about users, keyed project:user.")
    topic_memory: str = Field(
        "memstream.memory", description="Facts about users, stated by the owner: the read models' source."
    )
    topic_state: str = Field(
        "memstream.state", description="The owner's per-user memory (compacted changelog, written in its transactions)."
    )
    topic_progress: str = Field(
        "memstream.progress",
        description="How far the projection writer has written, per partition it reads (compacted; the API waits on it).",
    )
    topic_dead_letter: str = Field(
        "memstream.dead-letter",
        description="Records that could not be processed, and flushes whose extraction failed for good, each with its reason.",
    )
    topic_projects: str = Field(
        "memstream.projects", description="Project-level records (profile config), read whole by every process."
    )
    topic_partitions: int = Field(4, ge=1, description="Partitions of every Memstream topic (created when missing).")
    topic_replication: int = Field(1, ge=1, description="Replication factor for topics Memstream creates.")
    topic_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas for topics Memstream creates (with acks=all: replicas that must have a record).",
    )
    app_id: str = Field("memstream", description="Consumer group of the owner, and prefix of its transactional ids.")
    projection_group: str = Field("memstream-projections", description="Consumer group of the ClickHouse writers.")
    broker_session_timeout: float = Field(10.0, description="Kafka group session timeout, seconds.")
    broker_heartbeat_interval: float = Field(3.0, description="Kafka group heartbeat interval, seconds.")
    broker_rebalance_timeout: float = Field(10.0, description="Kafka group rebalance timeout, seconds.")
    produce_timeout: float = Field(10.0, description="Seconds the API waits for the broker to acknowledge a record.")

    # --- ClickHouse -------------------------------------------------------------------------
    clickhouse_url: str = Field(
        "chdb://.memstream/clickhouse",
        description="`chdb:///abs/path` for embedded ClickHouse, or `http://user:pass@host:8123` for a server (database: below).",
    )
    clickhouse_database: str = Field("memstream", description="Database holding the read models.")
    clickhouse_pool_size: int = Field(
        20, ge=1, description="Most connections a process keeps open to the ClickHouse server (not for chDB)."
    )
    clickhouse_cluster: str | None = Field(
        None,
        description="ClickHouse cluster the read models are sharded and replicated over (Distributed tables); unset: one server.",
    )
    projection_batch_size: int = Field(5000, ge=1, description="Most records one projection write takes.")
    projection_batch_wait_ms: int = Field(
        100, ge=1, description="How long the projection writer waits to fill a batch."
    )

    # --- buffers and bounds ------------------------------------------------------------------------
    max_chat_blob_buffer_token_size: int = Field(
        1024, ge=1, description="Flush a chat buffer once it holds this many tokens."
    )
    max_buffer_bytes: int = Field(
        262_144, ge=1024, le=700_000, description="Flush a chat buffer before its blobs pass this many bytes (encoded)."
    )
    max_buffer_messages: int = Field(500, ge=1, description="Flush a chat buffer once it holds this many messages.")
    max_blob_bytes: int = Field(
        262_144,
        ge=1024,
        le=700_000,
        description="Largest blob accepted (its blob_data, encoded; at most max_buffer_bytes for chats).",
    )
    max_blob_messages: int = Field(500, ge=1, description="Most messages one chat blob may carry.")
    buffer_flush_interval: float = Field(3600.0, gt=0, description="Flush a buffer idle for this many seconds.")
    max_queued: int = Field(
        100,
        ge=1,
        description="Most closed buffers and edits one user may have waiting for extraction; past it a blob is refused (its task fails).",
    )

    # --- LLM -----------------------------------------------------------------------------------
    llm_base_url: str | None = Field(None, description="OpenAI-compatible endpoint; unset → offline extractor.")
    llm_api_key: str = Field("none", description="API key for the LLM endpoint.")
    llm_model: str = Field("gpt-4o-mini", description="Chat model used for extraction.")
    llm_timeout: float = Field(60.0, description="Seconds one LLM call may take.")
    llm_max_attempts: int = Field(3, ge=1, description="Attempts per flush before it goes to the dead-letter topic.")
    llm_backoff: float = Field(1.0, ge=0, description="First retry delay in seconds; doubles each attempt.")
    extract_concurrency: int = Field(
        64, ge=1, description="Most extractions (LLM calls) and embeddings a worker runs at once, over all users."
    )
    health_grace: float = Field(
        10.0,
        ge=0,
        description="Seconds a part may keep failing (ClickHouse or the broker away) before the healthcheck reports it.",
    )
    shutdown_grace: float = Field(
        10.0,
        ge=0,
        description="Seconds a stopping worker lets extractions under way finish (their results are committed).",
    )
    embedding_base_url: str | None = Field(
        None, description="OpenAI-compatible embeddings endpoint; unset → event search ranks by words (lexical)."
    )
    embedding_api_key: str = Field("none", description="API key for the embeddings endpoint.")
    embedding_model: str = Field("text-embedding-3-small", description="Embedding model for events and search queries.")

    log_format: Literal["text", "json"] = Field(
        "text", description="How the `memstream` command logs: text lines, or one JSON object per line."
    )

    # --- API -------------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="API bind address.")
    port: int = Field(8019, description="API port.")
    max_body_bytes: int = Field(1_048_576, description="Largest request body accepted.")
    api_instance: str | None = Field(
        None,
        description="Names this API process among others (unique per process, the same across its restarts); default host-port.",
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port of `memstream worker`'s own `GET /metrics` (on MEMSTREAM_HOST, no token); unset: none, `0`: any free port. The API serves its metrics at `/metrics` behind the root token.",
    )
    wait_timeout: float = Field(60.0, description="Default seconds `wait_process=true` waits for a task.")
    read_your_writes_timeout: float = Field(
        5.0,
        description="Seconds a create/update/delete (users, profiles, events, project config) waits until readable.",
    )
    read_cache_mb: int = Field(
        256,
        ge=0,
        description="Megabytes (estimated) of hot users' profiles, newest events and unprocessed chats an API process keeps in memory; 0: none, every read asks ClickHouse.",
    )

    def api_transactional_id(self) -> str:
        """The API producer's transactional id: a restarted process aborts what its previous run left open."""
        return f"{self.app_id}.api.{self.api_instance or f'{socket.gethostname()}-{self.port}'}"

    @model_validator(mode="after")
    def _a_blob_fits_a_buffer(self) -> "Settings":
        if self.max_blob_bytes > self.max_buffer_bytes:
            raise ValueError(
                "MEMSTREAM_MAX_BLOB_BYTES must not exceed MEMSTREAM_MAX_BUFFER_BYTES (a buffer holds a blob)"
            )
        return self

    def limits(self) -> Limits:
        return Limits(
            blob_bytes=self.max_blob_bytes,
            blob_messages=self.max_blob_messages,
            buffer_tokens=self.max_chat_blob_buffer_token_size,
            buffer_bytes=self.max_buffer_bytes,
            buffer_messages=self.max_buffer_messages,
        )
