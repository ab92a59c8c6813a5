"""Signatures declared once: methods and wrappers take them from the function they call.

As xarray's plot accessor does, a delegate copies the function's name, docstring and
signature, so ``help()`` and ``inspect.signature`` show the real parameters and defaults.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["delegate", "keywords_from"]

F = TypeVar("F", bound=Callable[..., Any])


def delegate(func: Callable[..., Any]) -> Callable[..., Any]:
    """A method calling ``func(self._ds, ...)``, with ``func``'s name, docstring and signature.

    The signature drops ``func``'s first parameter (the dataset) and adds ``self``.
    """

    @functools.wraps(func)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return func(self._ds, *args, **kwargs)

    sig = inspect.signature(func)
    params = list(sig.parameters.values())[1:]
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = sig.replace(parameters=[this, *params])  # type: ignore[attr-defined]
    del method.__wrapped__  # inspect would otherwise follow it back to func's own signature
    return method


def keywords_from(target: Callable[..., Any], *, rest: bool = False) -> Callable[[F], F]:
    """Show the keyword-only parameters of ``target`` in place of a wrapper's ``**kwargs``.

    For a function that passes ``**kwargs`` on to ``target`` (a function, or an options class
    it builds): its signature lists them by name with ``target``'s defaults (the function
    itself is unchanged). The wrapper's own ``**kwargs`` stays at the end when ``target`` takes
    ``**kwargs`` as well, or when ``rest`` says the wrapper takes other keywords besides
    (``seqacts.extract`` passes them to the model).
    """

    def decorate(func: F) -> F:
        sig = inspect.signature(func)
        theirs = inspect.signature(target).parameters.values()
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        names = {p.name for p in own}
        extra = [p for p in theirs if p.kind is p.KEYWORD_ONLY and p.name not in names]
        kept = [p for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD
                and (rest or any(q.kind is q.VAR_KEYWORD for q in theirs))]  # fmt: skip
        func.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=[*own, *extra, *kept])
        return func

    return decorate
