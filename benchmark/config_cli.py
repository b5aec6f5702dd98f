"""`bench config show` / `bench config keys`: the resolved config of a cell (or a would-be cell), and every key."""

from __future__ import annotations

import json
from pathlib import Path

import click

from benchmark.errors import BenchError


@click.group("config")
def config():
    """Resolved configs and the config-key reference."""


@config.command("show", context_settings={"ignore_unknown_options": True})
@click.argument("cell", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the config as JSON")
@click.pass_context
def show(ctx, cell, as_json):
    """Print the resolved config a cell trained with (CELL: its directory in a results store). For a would-be cell
    use `bench recipe show --method M --dataset D --profile P [--set k=v]`, which also says where each value
    came from."""
    from benchmark.io import read_json

    if cell is None:
        raise BenchError("give a cell directory (STORE/cells/<id>); for a would-be cell: bench recipe show "
                         "--method M --dataset D --profile P")
    path = cell / "config.json" if cell.is_dir() else cell
    data = read_json(path)
    resolved = data.get("method_config") if isinstance(data, dict) else None
    if not isinstance(resolved, dict) or not all(isinstance(resolved.get(s), dict) for s in ("model", "train")):
        raise BenchError("not a cell config (no resolved method_config with model and train sections)", path)
    if as_json:
        click.echo(json.dumps(resolved, indent=1, sort_keys=True))
        return
    noise = data.get("noise") or {}
    dataset = (data.get("dataset") or {}).get("name")
    click.echo(f"cell {data.get('cell_id', cell.name)}: {data.get('method')} on {dataset}"
               f", noise {noise.get('model')} {noise.get('level')}, seed {data.get('seed')}, profile {data.get('profile')}")
    overrides = (data.get("locator") or {}).get("overrides") or {}
    for sec in ("model", "train", "method"):
        for key in sorted(resolved.get(sec) or {}):
            mark = "  <- --set" if f"{sec}.{key}" in overrides else ""
            click.echo(f"{sec}.{key} = {json.dumps(resolved[sec][key])}{mark}")


@config.command("keys")
def keys():
    """Every model/train key: its default per profile and dataset kind, range and meaning."""
    from benchmark.config_docs import key_rows

    for row in key_rows():
        defaults = ", ".join(f"{k} {json.dumps(v)}" for k, v in row["defaults"].items())
        click.echo(f"{row['key']}: {row['meaning']}" + (f" [{row['range']}]" if row["range"] else ""))
        click.echo(f"    {defaults}")
