"""Running a child process to its end within a deadline (killed, and the test failed, past it)."""

import asyncio
from typing import Any


async def finished(*argv: str, timeout: float, **options: Any) -> tuple[int, bytes, bytes]:
    """Run ``argv`` (stdout and stderr piped unless ``options`` say otherwise) and return its exit
    status, stdout and stderr; past ``timeout`` seconds it is killed and TimeoutError raised."""
    options = {"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.PIPE, **options}
    process = await asyncio.create_subprocess_exec(*argv, **options)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, out, err or b""
