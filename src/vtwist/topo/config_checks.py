"""Config checks and readers every role shares for its ``topo.*`` keys and cell lists."""

from __future__ import annotations

from vtwist.config import Config, Option
from vtwist.topo.errors import ValidationError


def check_topo_address(address: str) -> str | None:
    """The ``check`` of a ``topo.address`` option: why ``address`` is bad, or None."""
    from vtwist.topo.address import parse_topo_address

    try:
        parse_topo_address(address)
    except (ValidationError, ValueError) as e:
        return str(e)
    return None


def check_cells(cells: tuple[str, ...]) -> str | None:
    """The ``check`` of a list of cells to watch: at least one, each a valid name."""
    from vtwist.topo.names import validate_cell_name

    if not cells:
        return "name at least one cell to watch"
    for cell in cells:
        try:
            validate_cell_name(cell)
        except ValidationError as e:
            return str(e)
    return None


def topo_auth(config: Config, option: Option[str]) -> tuple[str, str] | None:
    """The ZooKeeper digest credentials in the file ``option`` names (None when empty);
    an unreadable or malformed file is a ``ConfigError`` naming the key."""
    from vtwist.topo.address import read_auth_file

    path = config.value(option)
    if not path:
        return None
    try:
        return read_auth_file(path)
    except ValidationError as e:
        raise config.problem(option.key, str(e)) from None
