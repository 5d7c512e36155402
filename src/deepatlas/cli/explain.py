"""`deepatlas explain heatmap|filters|disagree|rank`: attributions for people to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from deepatlas.cli._common import cli_errors, console, print_json, progress_bars
from deepatlas.db.graph import Graph
from deepatlas.paths import models_dir, out_dir
from deepatlas.workflows.explain import disagreement, explain_filters, explain_heatmap

app = typer.Typer(help="Explain single images (influential scores, prediction gradients) and where the graph's measures disagree.",
                  no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ModelOpt = Annotated[Path | None, typer.Option("--model", "-m", help="Checkpoint. Default: $DEEPATLAS_HOME/models/fashion-cnn.pt")]
ImageOpt = Annotated[int, typer.Option("--image", "-i", help="Index of the image in the split.")]
SplitOpt = Annotated[str, typer.Option(help="train or test.")]
OutOpt = Annotated[Path | None, typer.Option(help="Folder for the PNG. Default: $DEEPATLAS_HOME/out")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]


@app.command()
@cli_errors
def heatmap(
    image: ImageOpt,
    class_name: Annotated[str | None, typer.Option("--class", "-c", help="Only this class (default: every class).")] = None,
    method: Annotated[str, typer.Option(help="influence (influential scores) or gradient (d logit / d pixel).")] = "influence",
    model: ModelOpt = None,
    split: SplitOpt = "test",
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the Fashion-MNIST IDX files.")] = None,
    device: DeviceOpt = "auto",
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Input score images of one image for each class: red pushes toward the class, blue away."""
    res = explain_heatmap(model or models_dir() / "fashion-cnn.pt", image, class_name=class_name, method=method, split=split,
                          data_dir=data_dir, device=device, out_dir=out or out_dir())
    if json_out:
        print_json(res)
        return
    console.print(f"image {res['image']}: label [bold]{res['label']}[/], predicted [bold]{res['predicted']}[/]")
    for c in res["classes"]:
        console.print(f"  {c['class']:<12} p={res['probabilities'][c['class']]:.3f}  +{c['positive']:.3f} / {c['negative']:.3f}")
    console.print(f"figure {res['figure']}")


@app.command()
@cli_errors
def filters(
    image: ImageOpt,
    class_name: Annotated[str | None, typer.Option("--class", "-c", help="Target class (default: the predicted one).")] = None,
    model: ModelOpt = None,
    split: SplitOpt = "test",
    device: DeviceOpt = "auto",
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Each filter's influential score on the predicted class for one image, as bars."""
    res = explain_filters(model or models_dir() / "fashion-cnn.pt", image, class_name=class_name, split=split, device=device,
                          out_dir=out or out_dir())
    if json_out:
        print_json(res)
        return
    console.print(f"image {res['image']} ({res['label']}), scores on {res['target']}; top units:")
    for row in res["top"]:
        console.print(f"  {row['unit']:<10} {row['score']:+.4f}")
    console.print(f"figure {res['figure']}")


@app.command()
@cli_errors
def disagree(
    run: Annotated[str | None, typer.Option(help="Run name. Default: the latest complete run.")] = None,
    class_name: Annotated[str | None, typer.Option("--class", "-c", help="Only this class.")] = None,
    by: Annotated[str, typer.Option(help="influence or gradient.")] = "influence",
    k: Annotated[int, typer.Option("-k", min=1, help="'Strong' means in the class's top k.")] = 10,
    min_r: Annotated[float, typer.Option(help="Correlated means r at least this.")] = 0.5,
    json_out: JsonOpt = False,
) -> None:
    """Units strongly correlated with a class but with little influence on it, and the reverse."""
    with Graph() as g:
        res = disagreement(g, run=run, class_name=class_name, by=by, min_r=min_r, k=k)
    if json_out:
        print_json(res)
        return
    for key in (f"correlated_not_{by}", f"{by}_not_correlated"):
        table = Table(title=f"{res['run']}: {key.replace('_', ' ')}")
        for col in ("class", "unit", "r", by, "r rank", f"{by} rank"):
            table.add_column(col)
        for row in res[key]:
            table.add_row(row["class"], row["unit"], f"{row['r']:.3f}", f"{row[by]:.4f}", str(row["r_rank"]), str(row[f"{by}_rank"]))
        console.print(table)


@app.command()
@cli_errors
def rank(
    dataset: Annotated[str, typer.Option(help="two-features, plus-one or orange-skin.")] = "two-features",
    n_train: Annotated[int, typer.Option(min=100, help="Training samples.")] = 80_000,
    n_test: Annotated[int, typer.Option(min=10, help="Samples ranked.")] = 10_000,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed for data and weights.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """The influential-scores paper's rank experiment on its synthetic data sets.

    Trains an MLP (3 x 200 ReLU) on the soft labels, then checks how often the relevant inputs
    hold the top ranks by |influential score| on the predicted output node.
    """
    from deepatlas.explain.rank import rank_experiment

    with progress_bars(not json_out) as progress:
        res = rank_experiment(dataset, n_train=n_train, n_test=n_test, epochs=epochs, seed=seed,
                              progress=lambda n: progress("train", n, epochs))
    if json_out:
        print_json(res)
        return
    console.print(f"{dataset}: relevant inputs {res['relevant']}; |Y1 error| {res['mae_y1']:.4f}")
    console.print(f"  relevant inputs hold the top ranks: [bold]{res['top_ranks']:.1%}[/] of samples")
    console.print(f"  an irrelevant input outranks a relevant one: {res['outranked']:.1%}")
    console.print("  mean rank per input: " + ", ".join(f"X{i} {r:.2f}" for i, r in enumerate(res["mean_rank"])))
