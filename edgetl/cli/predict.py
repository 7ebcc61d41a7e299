"""``edgetl predict``: run a verified bundle on inputs."""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli import cli


@cli.command("predict")
@click.argument("bundle", type=click.Path())
@click.argument("inputs", nargs=-1, type=click.Path(exists=True))
@click.option("--text", "texts", multiple=True, help="A text to classify (text models; repeatable).")
@click.option("--file", "files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Text models: a .txt file (one text per line), or a CSV/TSV/JSONL with labels (repeatable).")
@click.option("--top-k", "-k", default=3, show_default=True, type=click.IntRange(min=1),
              help="Classes to show per input.")
@click.option("--verbose", "-v", is_flag=True, help="Show the traceback of an unexpected error.")
def predict_cmd(bundle: str, inputs: tuple[str, ...], texts: tuple[str, ...], files: tuple[str, ...],
                top_k: int, verbose: bool) -> None:
    """Classify images or texts with a bundle (its sha256s are checked first; a tampered bundle is refused).

    INPUTS are image files or directories (searched recursively), or, for a text model, text files. When an image
    lies in a folder named after one of the bundle's classes (ImageFolder layout), or a text file gives labels
    (CSV/TSV/JSONL: text, label), the accuracy over those inputs is printed too. An unreadable image is skipped
    with a warning, as training skips it; a folder with no images is an error (exit 2).

    \b
    Examples:
      edgetl predict runs/default/bundle photo.jpg
      edgetl predict runs/default/bundle.tar.gz ../shared/datasets/hymenoptera/val
      edgetl predict runs/sst2/bundle --text "a gripping, beautifully acted film"
      edgetl predict runs/sst2/bundle --file ../shared/datasets/sst2/test.tsv
    """
    from edgetl.errors import ConfigError
    from edgetl.predict import open_bundle

    if not (inputs or texts or files):
        from edgetl.errors import ConfigError

        raise ConfigError("nothing to predict", hint="pass input files, --text TEXT or --file FILE")
    with open_bundle(bundle) as b:
        paths = b.collect([Path(p) for p in (*inputs, *files)], texts)
        labelled = correct = shown_any = 0
        for pred in b.predict(paths, top_k=top_k):
            shown_any += 1
            shown = ", ".join(f"{label} {p:.3f}" for label, p in pred.top)
            click.echo(f"{pred.image}: {shown}")
            truth = b.truth(pred.item if pred.item is not None else pred.image)
            if truth is not None:
                labelled += 1
                correct += pred.top[0][0] == truth
        if b.skipped:
            listing = "\n  ".join(f"{item}: {why}" for item, why in b.skipped[:20])
            more = f"\n  ... and {len(b.skipped) - 20} more" if len(b.skipped) > 20 else ""
            click.secho(f"warning: skipped {len(b.skipped)} unreadable input(s):\n  {listing}{more}",
                        fg="yellow", err=True)
        if not shown_any:
            from edgetl.errors import DataError

            raise DataError(f"none of the {len(paths)} input(s) could be read")
        if labelled:
            click.echo(f"accuracy: {correct}/{labelled} = {100.0 * correct / labelled:.2f}% "
                       f"(artifact {b.model_entry.get('artifact')}, {b.model_file.name}, "
                       f"bundle for {b.manifest.get('target')})")
