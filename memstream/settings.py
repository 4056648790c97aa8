"""All configuration in one place, read from the environment (prefix ``MEMSTREAM_``).

Every package receives a ``Settings`` instance from the entry point instead of reading the
environment itself, so tests can run several differently-configured stacks in one process.
"""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    topic_flushes: str = Field("memstream.flushes", description="Flushed buffers waiting for extraction.")
    topic_memory: str = Field("memstream.memory", description="Memory events: profile slots, events, task ends.")
    topic_dead_letter: str = Field("memstream.dead-letter", description="Flushes whose extraction failed for good.")
    topic_projects: str = Field("memstream.projects", description="Project-level records (profile config), read whole by every process.")
    topic_partitions: int = Field(4, ge=1, description="Partitions of every Memstream topic (created when missing).")
    topic_replication: int = Field(1, ge=1, description="Replication factor for topics Memstream creates.")
    topic_min_insync_replicas: int | None = Field(
        None, ge=1, description="min.insync.replicas for topics Memstream creates (with acks=all: replicas that must have a record)."
    )
    app_id: str = Field("memstream", description="Faust application id (consumer group and changelog prefix).")
    projection_group: str = Field("memstream-projections", description="Consumer group of the ClickHouse writers.")
    broker_session_timeout: float = Field(10.0, description="Kafka group session timeout, seconds.")
    broker_rebalance_timeout: float = Field(10.0, description="Kafka group rebalance timeout, seconds.")
    produce_timeout: float = Field(10.0, description="Seconds the API waits for the broker to acknowledge a record.")

    # --- ClickHouse -------------------------------------------------------------------------
    clickhouse_url: str = Field(
        "chdb://.memstream/clickhouse",
        description="`chdb:///abs/path` for embedded ClickHouse, or `http://user:pass@host:8123` for a server (database: below).",
    )
    clickhouse_database: str = Field("memstream", description="Database holding the read models.")
    projection_batch_size: int = Field(5000, ge=1, description="Most records one projection write takes.")
    projection_batch_wait_ms: int = Field(100, ge=1, description="How long the projection writer waits to fill a batch.")

    # --- buffers ------------------------------------------------------------------------------
    max_chat_blob_buffer_token_size: int = Field(1024, ge=1, description="Flush a chat buffer once it holds this many tokens.")
    buffer_flush_interval: float = Field(3600.0, gt=0, description="Flush a buffer idle for this many seconds.")

    # --- LLM -----------------------------------------------------------------------------------
    llm_base_url: str | None = Field(None, description="OpenAI-compatible endpoint; unset → offline extractor.")
    llm_api_key: str = Field("none", description="API key for the LLM endpoint.")
    llm_model: str = Field("gpt-4o-mini", description="Chat model used for extraction.")
    llm_timeout: float = Field(60.0, description="Seconds one LLM call may take.")
    llm_max_attempts: int = Field(3, ge=1, description="Attempts per flush before it goes to the dead-letter topic.")
    llm_backoff: float = Field(1.0, ge=0, description="First retry delay in seconds; doubles each attempt.")
    embedding_base_url: str | None = Field(
        None, description="OpenAI-compatible embeddings endpoint; unset → event search ranks by words (lexical)."
    )
    embedding_api_key: str = Field("none", description="API key for the embeddings endpoint.")
    embedding_model: str = Field("text-embedding-3-small", description="Embedding model for events and search queries.")

    # --- API -------------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="API bind address.")
    port: int = Field(8019, description="API port.")
    max_body_bytes: int = Field(1_048_576, description="Largest request body accepted.")
    wait_timeout: float = Field(60.0, description="Default seconds `wait_process=true` waits for a task.")
    read_your_writes_timeout: float = Field(
        5.0, description="Seconds a create/update/delete (users, profiles, events, project config) waits until readable."
    )

    @property
    def clickhouse_is_embedded(self) -> bool:
        return self.clickhouse_url.startswith("chdb://")
