"""Hand back one exception as itself when a nursery wraps it in a group."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import TypeVar

import trio

__all__ = ["leaves", "single_exception", "start_in_nursery"]

T = TypeVar("T")


@contextmanager
def single_exception() -> Iterator[None]:
    """Re-raise a lone exception out of the group a trio nursery wrapped it in.

    trio nurseries always raise groups. Our background tasks do not raise on
    purpose (they hand errors to the utterances they concern), so a group
    leaving our context managers nearly always holds exactly one exception:
    the caller's own, from the body of the ``async with``. The caller should
    get that exception back unchanged, not a group to ``except*``. Only the
    nursery's own level is taken off: if the caller raised a group of their
    own, that group comes back as it was. A group of several (a bug of ours
    beside the caller's error) is left alone, so that nothing is hidden.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        exc = group.exceptions[0]
        # ``from`` keeps the exception's own cause and hides the group it sat in.
        raise exc from exc.__cause__


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in a group and its nested groups, flattened."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(leaves(exc))
        else:
            out.append(exc)
    return out


async def start_in_nursery(
    nursery: trio.Nursery,
    resource: AbstractAsyncContextManager[T],
    closed: Callable[[T], trio.Event],
) -> T:
    """Run an ``async with`` resource in a task of the caller's nursery.

    The ``connect_*(nursery, ...)`` twins of the ``open_*`` context managers
    use this: the task enters ``resource``, hands back what it yields, and
    leaves the block when ``closed(value)`` is set (by the value's
    ``aclose()``) or when the nursery is cancelled.
    """

    async def run(*, task_status: trio.TaskStatus[T] = trio.TASK_STATUS_IGNORED) -> None:
        async with resource as value:
            task_status.started(value)
            await closed(value).wait()

    with single_exception():
        value: T = await nursery.start(run)
    return value
