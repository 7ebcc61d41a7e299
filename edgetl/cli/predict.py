"""``edgetl predict``: run a verified bundle on inputs."""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli import cli


@cli.command("predict")
@click.argument("bundle", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--top-k", "-k", default=3, show_default=True, help="Classes to show per image.")
def predict_cmd(bundle: str, images: tuple[str, ...], top_k: int) -> None:
    """Classify images with a bundle (its sha256s are checked first; a tampered bundle is refused).

    IMAGES are files or directories (searched recursively). When an image lies in a folder named after one of
    the bundle's classes (ImageFolder layout), the accuracy over those images is printed too.

    \b
    Examples:
      edgetl predict runs/default/bundle photo.jpg
      edgetl predict runs/default/bundle.tar.gz ../shared/datasets/hymenoptera/val
    """
    from edgetl.predict import open_bundle

    b = open_bundle(bundle)
    paths = b.collect([Path(p) for p in images])
    labelled = correct = 0
    for pred in b.predict(paths, top_k=top_k):
        shown = ", ".join(f"{label} {p:.3f}" for label, p in pred.top)
        click.echo(f"{pred.image}: {shown}")
        truth = b.truth(pred.image)
        if truth is not None:
            labelled += 1
            correct += pred.top[0][0] == truth
    if labelled:
        click.echo(f"accuracy: {correct}/{labelled} = {100.0 * correct / labelled:.2f}% "
                   f"(artifact {b.model_entry['artifact']}, {b.model_file.name}, bundle for {b.manifest['target']})")
