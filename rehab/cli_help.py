"""Plain command-line help for every `rehab` command (the runtime's, train's and export's): Click's layout, no
Rich markup (it would read "[train]" as a style tag and drop it), no Python type labels."""

from __future__ import annotations

from typer.core import TyperArgument, TyperCommand, TyperOption


class Command(TyperCommand):
    """A command whose help shows what each parameter takes by a metavar (DIR, NAME, N, PATH) only.

    Typer labels every parameter with its Python type (``<bool>``, ``<path>``, ``<list[Path]>``): an option
    without a metavar of its own gets Click's name for its type (PATH, TEXT, INTEGER), an argument its own name
    in capitals, and an argument that has a metavar no label at all (its metavar is its name in the usage line).
    """

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperArgument):
                param.metavar = param.metavar or (param.name or "value").upper()
                param.display_type_rich = _no_type_label
            elif isinstance(param, TyperOption) and param.metavar is None and not param.is_flag:
                param.metavar = _metavar_of(param)
        return params


# Click's names for what an option takes, by its Python type.
_METAVARS = {"str": "TEXT", "Path": "PATH", "int": "INTEGER", "float": "NUMBER"}


def _metavar_of(option: TyperOption) -> str:
    bare = option.bare_type()
    if bare.startswith("list[") and bare.endswith("]"):
        bare = bare[5:-1]
    return _METAVARS.get(bare, (option.name or "value").upper())


def _no_type_label(ctx) -> None:
    return None
