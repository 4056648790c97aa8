"""Creating projects: ``memstream project create NAME`` prints the project's token once."""

from aiokafka import AIOKafkaProducer

from memstream.settings import Settings
from streams.project_tokens import check_project_name, new_token, token_sha256
from streams.projects import ProjectDirectory
from streams.records import ProjectCreated, encode
from streams.topics import ensure_topics


class ProjectExists(Exception):
    """A project of that name exists; its token cannot be shown again."""


async def create_project(settings: Settings, name: str) -> str:
    """Record a new project (only its token's hash) and return the token."""
    project_id = check_project_name(name)
    if project_id == settings.default_project:
        raise ProjectExists(f"'{project_id}' is the default project; the root token acts for it")
    await ensure_topics(settings)
    directory = ProjectDirectory(settings.kafka_bootstrap, settings.topic_projects)
    await directory.start()
    try:
        if directory.exists(project_id):
            raise ProjectExists(f"project '{project_id}' already exists")
    finally:
        await directory.stop()
    token = new_token(project_id)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        record = ProjectCreated(project_id=project_id, token_sha256=token_sha256(token))
        await producer.send_and_wait(settings.topic_projects, encode(record), key=record.key)
    finally:
        await producer.stop()
    return token
