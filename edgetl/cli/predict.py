"""``edgetl predict``: run a verified bundle on inputs."""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli import cli


@cli.command("predict")
@click.argument("bundle", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--top-k", "-k", default=3, show_default=True, type=click.IntRange(min=1),
              help="Classes to show per image.")
@click.option("--verbose", "-v", is_flag=True, help="Show the traceback of an unexpected error.")
def predict_cmd(bundle: str, images: tuple[str, ...], top_k: int, verbose: bool) -> None:
    """Classify images with a bundle (its sha256s are checked first; a tampered bundle is refused).

    IMAGES are files or directories (searched recursively). When an image lies in a folder named after one of
    the bundle's classes (ImageFolder layout), the accuracy over those images is printed too. An unreadable
    image is skipped with a warning, as training skips it; a folder with no images is an error (exit 2).

    \b
    Examples:
      edgetl predict runs/default/bundle photo.jpg
      edgetl predict runs/default/bundle.tar.gz ../shared/datasets/hymenoptera/val
    """
    from edgetl.predict import open_bundle

    with open_bundle(bundle) as b:
        paths = b.collect([Path(p) for p in images])
        labelled = correct = shown_any = 0
        for pred in b.predict(paths, top_k=top_k):
            shown_any += 1
            shown = ", ".join(f"{label} {p:.3f}" for label, p in pred.top)
            click.echo(f"{pred.image}: {shown}")
            truth = b.truth(pred.image)
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
