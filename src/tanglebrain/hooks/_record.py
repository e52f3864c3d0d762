"""Records of the handlers: ``typing.NamedTuple`` to a type checker, built without ``typing``.

``typing`` imports ``re`` (~7 ms of start-up with it) and ``dataclasses`` imports
``inspect`` (~40 ms): a handler runs on every tool call and can afford neither. At run
time :class:`Record` is a small tuple subclass that reads the fields and their defaults
from the class annotations, as ``NamedTuple`` does: positional or keyword construction,
attribute access, tuple equality and hashing, ``_fields``, ``_asdict`` and ``_replace``.
"""

from __future__ import annotations

__all__ = ["Record"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:

    class Record(tuple):
        """A named tuple declared like ``typing.NamedTuple``: annotated fields, defaults."""

        __slots__ = ()
        _fields: tuple[str, ...] = ()

        def __init_subclass__(cls) -> None:
            names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063
            cls._fields = names
            cls._defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
            for i, name in enumerate(names):
                setattr(cls, name, property(lambda self, i=i: self[i], doc=f"Field {i}."))

        def __new__(cls, *args: object, **kwargs: object) -> Record:
            names = cls._fields
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__} takes {len(names)} arguments")
            values = list(args)
            for name in names[len(args) :]:
                if name in kwargs:
                    values.append(kwargs.pop(name))
                elif name in cls._defaults:
                    values.append(cls._defaults[name])
                else:
                    raise TypeError(f"{cls.__name__} is missing {name!r}")
            if kwargs:
                raise TypeError(f"{cls.__name__} got unexpected {', '.join(kwargs)}")
            return tuple.__new__(cls, values)

        def __repr__(self) -> str:
            inner = ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, self, strict=True))
            return f"{type(self).__name__}({inner})"

        def _asdict(self) -> dict[str, object]:
            return dict(zip(self._fields, self, strict=True))

        def _replace(self, **changes: object) -> Record:
            return type(self)(**{**self._asdict(), **changes})
