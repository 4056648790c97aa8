"""Prompt for the one re-ask after a malformed extraction answer.

Why it is shaped this way: extraction runs at temperature 0, so sending the same request again
tends to return the same broken answer. The re-ask therefore continues the conversation: the
model's own answer goes back as the assistant turn, followed by what was wrong with it (the
first line of the JSON or pydantic error), and a request to answer again in the same form. The
original system prompt and schema stay in place, so nothing about the task changes.
"""

from openai.types.chat import ChatCompletionMessageParam

REPAIR = """Your answer could not be used: {problem}
Answer again with one JSON object of the form asked for in the instructions, and nothing else."""


def messages(request: list[ChatCompletionMessageParam], answer: str, problem: str) -> list[ChatCompletionMessageParam]:
    """``request`` continued with the rejected ``answer`` and what is wrong with it."""
    return [
        *request,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": REPAIR.format(problem=problem)},
    ]
