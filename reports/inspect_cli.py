"""`bench inspect STORE|NOISY_FILE`: the boxes of a store or a noisy file in FiftyOne (or as JSON)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("inspect")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="FiftyOne dataset name (default: noisybox-<folder or file name>)")
@click.option("--image-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder of a noisy file's images (a store knows its datasets)")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the samples and boxes as JSON instead (no FiftyOne needed)")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="export the FiftyOne dataset to this folder (FiftyOneDataset format) instead of launching the app")
@click.option("--launch/--no-launch", default=True, show_default=True, help="open the FiftyOne app")
def inspect_cmd(target, name, image_root, json_out, export_dir, launch):
    """Look at a results store (or a noisy file) in FiftyOne: clean, noisy, refined and predicted boxes, with IoUs,
    manifest flags and failure modes as filterable tags."""
    from benchmark.io import write_json
    from reports.inspect import records_from_noisy_file, records_from_store, to_fiftyone

    if target.is_dir():
        records = records_from_store(target, echo=lambda line: click.echo(line, err=True))
    else:
        records = records_from_noisy_file(target, image_root)
    boxes = sum(len(v) for r in records for v in r["fields"].values())
    if json_out is not None:
        write_json(json_out, records, indent=True)
        click.echo(f"wrote {json_out}: {len(records)} samples, {boxes} boxes")
        return
    dataset = to_fiftyone(records, name or f"noisybox-{target.resolve().name}")
    click.echo(f"FiftyOne dataset {dataset.name!r}: {len(records)} samples, {boxes} boxes")
    if export_dir is not None:
        import fiftyone as fo

        dataset.export(export_dir=str(export_dir), dataset_type=fo.types.FiftyOneDataset)
        click.echo(f"exported to {export_dir}")
    elif launch:
        import fiftyone as fo

        session = fo.launch_app(dataset)
        session.wait()
