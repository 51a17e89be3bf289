"""`harness epitome`: the EPITOME classifiers behind DIFF-EPITOME (fetch the data, train, report, import the
original checkpoints). Registered as an esc_harness.commands entry point; each command imports its module lazily."""
from __future__ import annotations

from pathlib import Path

import click

from harness import options


@click.group()
def epitome() -> None:
    """EPITOME classifiers for DIFF-EPITOME: fetch the data, train, report."""


@epitome.command("fetch")
@options.data_dir
@click.option("--force", is_flag=True)
def epitome_fetch(data_dir: Path | None, force: bool) -> None:
    """Download the EPITOME CSVs from their source and check their sha256."""
    from . import data as ep

    written = ep.fetch(data_dir, force=force)
    click.echo(f"{len(written)} file(s) written; verified in {ep.data_dir(data_dir)}")


@epitome.command("train")
@click.option("--encoder", default="minilm", show_default=True, help="'minilm' (packaged all-MiniLM-L6-v2) or a local model folder, e.g. roberta-base.")
@click.option("--arch", type=click.Choice(["bi", "cross"]), default="bi", show_default=True)
@click.option("--mechanisms", default="ER,IP,EX", show_default=True)
@click.option("--separate", is_flag=True, help="Train each mechanism's classifier on its own (default: together, one trained encoder top and a head per mechanism).")
@options.output_dir(None, "Folder of the classifiers [default: <harness home>/epitome/<encoder>-<arch>-<recipe>]", deprecated=("--out",))
@click.option("--epochs", type=int)
@click.option("--lr", type=float)
@click.option("--batch-size", type=int)
@click.option("--train-layers", type=int, help="Top encoder layers trained (MiniLM default 2; >= layer count: all).")
@click.option("--class-weight-power", type=float, help="Level weights (n / (3 n_level)) ** POWER in the loss: 0 unweighted, 1 balanced (MiniLM default 0.5).")
@click.option("--seed", type=int, default=12, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@options.data_dir
def epitome_train(encoder, arch, mechanisms, separate, output_dir, epochs, lr, batch_size, train_layers, class_weight_power, seed, threads, data_dir) -> None:
    """Train the three classifiers on the fixed split; writes weights and the held-out report."""
    from . import train as ep

    extra = {k: v for k, v in {"epochs": epochs, "lr": lr, "batch_size": batch_size, "train_layers": train_layers,
                               "class_weight_power": class_weight_power}.items() if v is not None}
    result = ep.main(encoder=encoder, arch=arch, mechanisms=[m.strip() for m in mechanisms.split(",") if m.strip()], out=output_dir,
                     joint=not separate, seed=seed, threads=threads, data_root=data_dir, log=click.echo, **extra)
    click.echo((Path(result["folder"]) / "report.md").read_text())


@epitome.command("report")
@click.argument("tag", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON only: per mechanism accuracy, macro-F1, per-level precision/recall/F1/support on the test split; tag; training seconds.")
def epitome_report(tag: str | None, as_json: bool) -> None:
    """Accuracy, macro-F1 and confusion matrices of built classifiers on the held-out split."""
    import json

    from . import train as ep

    summary = ep.report(tag)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        click.echo((Path(summary["folder"]) / "report.md").read_text())


@epitome.command("import-original")
@click.option("--checkpoints", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="Folder with finetuned_{ER,IP,EX}.pth.")
@click.option("--roberta-base", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@options.output_dir(None, "Folder of the imported classifiers [default: <harness home>/epitome/original]", deprecated=("--out",))
@options.data_dir
def epitome_import_original(checkpoints: Path, roberta_base: Path, output_dir: Path | None, data_dir: Path | None) -> None:
    """Use the original EPITOME checkpoints (Sharma et al. 2020) where you have them."""
    from . import train as ep

    ep.import_original(checkpoints, roberta_base, out=output_dir, data_root=data_dir, log=click.echo)
