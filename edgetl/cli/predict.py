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
@click.option("--top-k", "-k", default=3, show_default=True, help="Classes to show per input.")
def predict_cmd(bundle: str, inputs: tuple[str, ...], texts: tuple[str, ...], files: tuple[str, ...],
                top_k: int) -> None:
    """Classify images or texts with a bundle (its sha256s are checked first; a tampered bundle is refused).

    INPUTS are image files or directories (searched recursively), or, for a text model, text files. When an image
    lies in a folder named after one of the bundle's classes (ImageFolder layout), or a text file gives labels
    (CSV/TSV/JSONL: text, label), the accuracy over those inputs is printed too.

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
        raise ConfigError("nothing to predict", hint="pass input files, --text TEXT or --file FILE")
    b = open_bundle(bundle)
    items = b.collect([Path(p) for p in (*inputs, *files)], texts)
    labelled = correct = 0
    for pred in b.predict(items, top_k=top_k):
        shown = ", ".join(f"{label} {p:.3f}" for label, p in pred.top)
        click.echo(f"{pred.image}: {shown}")
        truth = b.truth(pred.item if pred.item is not None else pred.image)
        if truth is not None:
            labelled += 1
            correct += pred.top[0][0] == truth
    if labelled:
        click.echo(f"accuracy: {correct}/{labelled} = {100.0 * correct / labelled:.2f}% "
                   f"(artifact {b.model_entry['artifact']}, {b.model_file.name}, bundle for {b.manifest['target']})")
