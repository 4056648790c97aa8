"""Project tokens: ``sk-<project>-<secret>``. Only a SHA-256 of the whole token is ever stored.

The project is readable from the token so a request can be routed to its project's hash
without a lookup table of secrets; the secret is 192 random bits, so a fast hash is enough
(no password stretching needed for a non-guessable key).
"""

import hashlib
import re
import secrets

_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")
PREFIX = "sk-"


def check_project_name(name: str) -> str:
    """``name`` if it can be a project id (lowercase letters, digits, ``_``), else ValueError."""
    if not _NAME.match(name):
        raise ValueError(f"project name '{name}' must be 1-63 of a-z, 0-9 and _, starting with a letter or digit")
    return name


def new_token(project_id: str) -> str:
    return f"{PREFIX}{check_project_name(project_id)}-{secrets.token_hex(24)}"


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def project_of_token(token: str) -> str | None:
    """The project a well-formed project token names, or None."""
    if not token.startswith(PREFIX):
        return None
    project, _, secret = token[len(PREFIX) :].rpartition("-")
    if not project or not secret or not _NAME.match(project):
        return None
    return project
