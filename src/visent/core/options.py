"""Options records: the options of a stage as one dataclass, each field with its default, its help and its
command-line form.

A stage's record (:class:`visent.ingest.IngestOptions`, :class:`visent.teach.TeachOptions`,
:class:`visent.clean.CleanOptions`, :class:`visent.train.TrainOptions`) is the one place where one of its options
is spelled: the stage function takes the record or its fields as keyword arguments (:func:`resolve`), the
parameters the stage records in the dataset's manifest are made from it (the record's ``params``), the command
line of the stage is generated from its fields (:func:`command`), and :class:`visent.build.BuildOptions`, hence
``visent build``, holds the fields of the four (:func:`combine`). A field is declared with :func:`option`; typer
is imported only when a command line is made.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, List, Optional

OPTION = "visent_option"  # the key of a field's metadata that holds its Option

ENGINE_HELP = ("Where the work runs: local (this process) or ray (the actors of a Ray cluster; needs `pip install "
               "\"visent\\[ray]\"`). The tables are the same.")
RAY_ADDRESS_HELP = ("With --engine ray: the cluster to join (auto, or the head's host:port); default: $RAY_ADDRESS, "
                    "else start a local Ray on 127.0.0.1.")
SEED_HELP = "Random seed for splits and balancing."


@dataclass(frozen=True)
class Flag:
    """One command-line option: the parameter ``name`` the command function gets, its flags (``decls``:
    ``--min-side``, ``--balance/--no-balance``), its help, default, type (the annotation typer reads), bounds and,
    in ``visent build``, the help panel it is listed in."""

    name: str
    decls: tuple[str, ...]
    help: str
    default: Any
    type: Any
    min: float | None = None
    max: float | None = None
    panel: str | None = None


@dataclass(frozen=True)
class Option:
    """What a field of a record is beside its default: its help; its flag (default: the field's name, dashed;
    ``--x/--no-x`` for a bool), command-line type (default: the field's annotation) and bounds; whether the stage
    records it among its parameters (``fingerprint``: an option that changes what the stage writes); or, for a
    field several command-line options make (clean's thresholds), those ``flags`` and the function ``value`` that
    makes the field's value of theirs (a dict by flag name)."""

    help: str
    flag: str | None = None
    type: Any = None
    min: float | None = None
    max: float | None = None
    fingerprint: bool = True
    flags: tuple[Flag, ...] | None = None
    value: Callable[[dict[str, Any]], Any] | None = None
    panel: str | None = None


def option(default: Any = MISSING, *, help: str, flag: str | None = None, type: Any = None,
           min: float | None = None, max: float | None = None, fingerprint: bool = True,
           flags: tuple[Flag, ...] | None = None, value: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """A field of an options record: its default and :class:`Option` (see there)."""
    spec = Option(help=help, flag=flag, type=type, min=min, max=max, fingerprint=fingerprint, flags=flags,
                  value=value)
    return dataclasses.field(default=default, metadata={OPTION: spec})


def engine_option() -> Any:
    """The ``engine`` field of a stage that hands its batches to an engine (``"local"``, ``"ray"`` or an engine
    of :func:`visent.engine.get_engine`)."""
    return option("local", help=ENGINE_HELP, type=str, fingerprint=False)


def ray_address_option() -> Any:
    """The ``ray_address`` field that goes with :func:`engine_option`."""
    return option(None, help=RAY_ADDRESS_HELP, fingerprint=False)


def seed_option() -> Any:
    """The ``seed`` field of clean and train (one ``--seed`` in ``visent build``)."""
    return option(0, help=SEED_HELP)


def options(record: Any) -> list[tuple[dataclasses.Field, Option]]:
    """The fields of ``record`` (a record class or instance) that are options, with their :class:`Option`."""
    return [(f, f.metadata[OPTION]) for f in dataclasses.fields(record) if OPTION in f.metadata]


def resolve(record: type, options: Any = None, kwargs: dict[str, Any] | None = None, *, what: str) -> Any:
    """The record a stage function ``what`` runs with: ``options`` (a ``record``, default: its defaults) with the
    keyword arguments ``kwargs`` set on it; a name that is not a field of ``record`` is a TypeError naming it."""
    kwargs = kwargs or {}
    names = [f.name for f in dataclasses.fields(record)]
    unknown = [name for name in kwargs if name not in names]
    if unknown:
        raise TypeError(f"{what}() got an unknown option {unknown[0]!r}; its options: {', '.join(names)}")
    if options is None:
        return record(**kwargs)
    if not isinstance(options, record):
        raise TypeError(f"{what}() takes its options as a {record.__name__}, not {type(options).__name__}")
    return dataclasses.replace(options, **kwargs) if kwargs else options


def fingerprinted(record: Any) -> list[str]:
    """The names of the fields of ``record`` that its stage records among its parameters."""
    return [f.name for f, spec in options(record) if spec.fingerprint]


# the command line ----------------------------------------------------------------------------------------------
def flags(record: Any, only: tuple[str, ...] | None = None) -> list[tuple[str, tuple[Flag, ...]]]:
    """Each option field of ``record`` (those named in ``only``, in that order, when given) with its command-line
    options."""
    hints = typing.get_type_hints(record if isinstance(record, type) else type(record))
    fields = options(record)
    if only is not None:  # in the order of ``only``
        fields = sorted((item for item in fields if item[0].name in only), key=lambda item: only.index(item[0].name))
    out = []
    for f, spec in fields:
        if spec.flags is not None:
            out.append((f.name, tuple(dataclasses.replace(flag, panel=spec.panel) for flag in spec.flags)))
            continue
        kind = spec.type if spec.type is not None else _command_type(hints[f.name])
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        decl = spec.flag or ("--{0}/--no-{0}" if kind is bool else "--{0}").format(f.name.replace("_", "-"))
        out.append((f.name, (Flag(f.name, (decl,), spec.help, default, kind, spec.min, spec.max, spec.panel),)))
    return out


def _command_type(hint: Any) -> Any:
    """The type typer reads for a field's annotation: ``X | None`` → ``Optional[X]``, ``tuple[X, ...]`` →
    ``List[X]`` (a repeatable option)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return Optional[_command_type(rest[0])]
    if typing.get_origin(hint) is tuple:
        return List[args[0]]  # type: ignore[valid-type]
    return hint


def parameters(record: Any, only: tuple[str, ...] | None = None) -> list[inspect.Parameter]:
    """The command-line options of ``record``'s fields as keyword parameters with ``typer.Option`` defaults, the
    form typer reads a command function's signature in."""
    import typer

    out = []
    for _, options_of_field in flags(record, only):
        for flag in options_of_field:
            default = typer.Option(flag.default, *flag.decls, help=flag.help, min=flag.min, max=flag.max,
                                   rich_help_panel=flag.panel)
            out.append(inspect.Parameter(flag.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                         annotation=flag.type))
    return out


def from_command(record: type, values: dict[str, Any], only: tuple[str, ...] | None = None) -> Any:
    """The record of the values the command line gave (by parameter name); fields not in ``only`` keep their
    defaults."""
    specs = {f.name: spec for f, spec in options(record)}
    kwargs = {}
    for name, options_of_field in flags(record, only):
        spec = specs[name]
        if spec.value is not None:
            kwargs[name] = spec.value({flag.name: values[flag.name] for flag in options_of_field})
        else:
            value = values[name]
            kwargs[name] = tuple(value or ()) if typing.get_origin(options_of_field[0].type) is list else value
    return record(**kwargs)


def command(func: Callable[..., Any], record: type, only: tuple[str, ...] | None = None) -> Callable[..., Any]:
    """``func`` as a command typer reads: its parameter ``options`` replaced, where it stands, by the command-line
    options of ``record``'s fields (those in ``only``); called, it gets the record they make as ``options``."""
    own = list(inspect.signature(func, eval_str=True).parameters.values())
    at = [p.name for p in own].index("options")
    generated = parameters(record, only)
    names = [p.name for p in generated]
    clash = set(names) & {p.name for p in own}
    if clash:
        raise TypeError(f"{func.__name__}: {', '.join(sorted(clash))} both an option of {record.__name__} and a "
                        "parameter of its own")

    def run(**values: Any) -> Any:
        chosen = {name: values.pop(name) for name in names}
        return func(**values, options=from_command(record, chosen, only))

    params = [*own[:at], *generated, *own[at + 1:]]
    run.__signature__ = inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params])  # type: ignore[attr-defined]
    run.__name__, run.__qualname__, run.__doc__, run.__module__ = (func.__name__, func.__qualname__, func.__doc__,
                                                                   func.__module__)
    return run


# several records as one ----------------------------------------------------------------------------------------
def combine(name: str, parts: dict[str, type], *, module: str) -> type:
    """One record with the option fields of the records ``parts`` (a stage's name → its record), in their order.

    A field that several of them have alike (the same default and :class:`Option`: ``seed``, ``engine``) is one
    field, whose help ends saying which stages it is for; a name they have with different meanings
    (``batch_size``) becomes one field per stage, the stage's name in front (``ingest_batch_size``,
    ``--ingest-batch-size``). Each field is listed in its stage's help panel. ``record.part(stage)`` is the
    stage's record of its values, ``Record.of(**records)`` the record of the stages' records, ``Record.records``
    the records by stage."""
    owners: dict[str, list[tuple[str, dataclasses.Field, Option]]] = {}
    for stage, record in parts.items():
        for f, spec in options(record):
            owners.setdefault(f.name, []).append((stage, f, spec))
    hints = {stage: typing.get_type_hints(record) for stage, record in parts.items()}
    fields: list[tuple[str, Any, Any]] = []
    where: dict[str, dict[str, str]] = {stage: {} for stage in parts}  # stage → its field → the flat field
    for stage, record in parts.items():
        for f, spec in options(record):
            shared = owners[f.name]
            alike = all(other.default == f.default and other_spec == spec for _, other, other_spec in shared)
            if alike and shared[0][0] != stage:
                where[stage][f.name] = f.name  # listed with the first stage that has it
                continue
            flat, spec = f.name, dataclasses.replace(spec, panel=f"{stage.capitalize()} options")
            if len(shared) > 1 and alike:
                stages = [s for s, _, _ in shared]
                spec = dataclasses.replace(spec, help=f"{spec.help} For {', '.join(stages[:-1])} and {stages[-1]}.")
            elif len(shared) > 1:
                flat = f"{stage}_{f.name}"
                spec = dataclasses.replace(spec, flag=_prefixed(spec.flag, stage), flags=None if spec.flags is None else
                                           tuple(dataclasses.replace(flag, name=f"{stage}_{flag.name}", decls=tuple(
                                               _prefixed(decl, stage) for decl in flag.decls)) for flag in spec.flags))
            where[stage][f.name] = flat
            fields.append((flat, hints[stage][f.name], dataclasses.field(default=f.default, metadata={OPTION: spec})))

    def part(self: Any, stage: str) -> Any:
        return parts[stage](**{own: getattr(self, flat) for own, flat in where[stage].items()})

    @classmethod  # type: ignore[misc]
    def of(cls: type, **records: Any) -> Any:
        values: dict[str, Any] = {}
        for stage, record in records.items():
            if not isinstance(record, parts[stage]):
                raise TypeError(f"{stage}: a {parts[stage].__name__}, not {type(record).__name__}")
            values.update({flat: getattr(record, own) for own, flat in where[stage].items()})
        return cls(**values)

    part.__doc__ = "The options record of ``stage`` (one of the stages' names) of these values."
    of.__func__.__doc__ = "The record of the stages' records (by stage name; the others keep their defaults)."
    combined = dataclasses.make_dataclass(name, fields, namespace={"part": part, "of": of, "records": parts})
    combined.__module__ = module
    return combined


def _prefixed(flag: str | None, stage: str) -> str | None:
    """``flag`` with ``stage`` in front of its name (``--batch-size`` → ``--ingest-batch-size``)."""
    if flag is None:
        return None
    return "/".join(decl.replace("--no-", f"--no-{stage}-", 1) if decl.startswith("--no-")
                    else decl.replace("--", f"--{stage}-", 1) for decl in flag.split("/"))
