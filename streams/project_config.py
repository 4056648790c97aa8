"""A project's profile config: Memobase's YAML format, parsed and validated into pydantic.

The YAML text is what users post and read back (``ProjectConfigSet`` carries it verbatim);
``parse`` turns it into a ``ProjectConfig``, or raises ``ConfigError`` naming the line and
key that are wrong, so a person can fix the file.

    overwrite_user_profiles:   replaces the default topics
    additional_user_profiles:  adds topics to the defaults (or to the overwrite)
    profile_strict_mode:       keep only slots that are in the config
    profile_validate_mode:     ask the model to drop values that do not fit a slot's description
    event_theme_requirement:   what the event summary should focus on
    event_tags:                tags to put on every event (name + description)
    language:                  language of the extracted values
"""

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from streams.profile import slot_key


class ConfigError(ValueError):
    """The config cannot be used; the message names the line and the key."""


class SubTopic(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    description: str | None = None
    update_description: str | None = None
    validate_value: bool | None = None


class Topic(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    topic: str = Field(min_length=1)
    description: str | None = None
    sub_topics: list[SubTopic] = []

    @field_validator("sub_topics", mode="before")
    @classmethod
    def _names_to_sub_topics(cls, value: Any) -> Any:
        """Memobase allows a sub topic to be just its name."""
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value


class EventTagSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    description: str | None = None


class ProjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    language: str | None = None
    overwrite_user_profiles: list[Topic] | None = None
    additional_user_profiles: list[Topic] = []
    profile_strict_mode: bool = False
    profile_validate_mode: bool = True
    event_theme_requirement: str | None = None
    event_tags: list[EventTagSpec] = []

    def topics(self) -> list[Topic]:
        """The topics extraction uses: the defaults (or the overwrite) plus the additional ones."""
        base = self.overwrite_user_profiles if self.overwrite_user_profiles is not None else DEFAULT_TOPICS
        merged: dict[str, Topic] = {t.topic: t for t in base}
        for extra in self.additional_user_profiles:
            known = merged.get(extra.topic)
            if known is None:
                merged[extra.topic] = extra
            else:
                names = {s.name for s in known.sub_topics}
                subs = [*known.sub_topics, *(s for s in extra.sub_topics if s.name not in names)]
                merged[extra.topic] = known.model_copy(update={"sub_topics": subs})
        return list(merged.values())

    def allowed_slots(self) -> frozenset[str]:
        """``topic::sub_topic`` keys that strict mode keeps."""
        return frozenset(slot_key(t.topic, s.name) for t in self.topics() for s in t.sub_topics)


def _topics(spec: dict[str, list[str]]) -> list[Topic]:
    return [Topic(topic=name, sub_topics=[SubTopic(name=s) for s in subs]) for name, subs in spec.items()]


DEFAULT_TOPICS: list[Topic] = _topics(
    {
        "basic_info": ["name", "age", "gender", "birth_date", "city", "nationality", "language"],
        "contact_info": ["email", "phone", "social_media"],
        "education": ["school", "degree", "major", "graduation_year"],
        "demographics": ["marital_status", "children", "household", "religion"],
        "work": ["company", "title", "industry", "skills", "work_style"],
        "interest": ["likes", "dislikes", "hobbies", "books", "movies", "music", "food", "sports", "travel"],
        "psychological": ["personality", "values", "goals", "worries", "motivations"],
        "life_event": ["marriage", "relocation", "health", "milestones", "job_change"],
    }
)

DEFAULT = ProjectConfig()


def parse(text: str) -> ProjectConfig:
    """Parse the YAML ``text``; an empty text is the default config."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"invalid YAML: {where}{getattr(exc, 'problem', None) or exc}") from None
    if root is None:
        return DEFAULT
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError("line 1: the config must be a YAML mapping of keys (language, event_tags, …)")
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        path = ".".join(str(p) for p in error["loc"])
        line = _line_of(root, error["loc"])
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(error["loc"]))
            raise ConfigError(f"line {line}: unknown key '{path}' (allowed here: {allowed})") from None
        raise ConfigError(f"line {line}: {path}: {error['msg']}") from None


def _line_of(node: yaml.Node, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest YAML node on ``loc`` (a pydantic error location)."""
    for depth, step in enumerate(loc, start=1):
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == step), None)
            if pair is None:
                break
            node = pair[0] if depth == len(loc) else pair[1]  # the key itself for the last step
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
        else:
            break
    return node.start_mark.line + 1


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = ProjectConfig
    nested: dict[str, type[BaseModel]] = {
        "overwrite_user_profiles": Topic,
        "additional_user_profiles": Topic,
        "sub_topics": SubTopic,
        "event_tags": EventTagSpec,
    }
    for step in loc[:-1]:
        if isinstance(step, str) and step in nested:
            model = nested[step]
    return list(model.model_fields)
