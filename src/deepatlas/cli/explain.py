"""`deepatlas explain heatmap|filters|disagree|rank`: attributions for people to look at."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from deepatlas.cli._common import (
    DataDirOpt,
    DataSpecOpt,
    DeviceOpt,
    JsonOpt,
    RunOpt,
    cli_errors,
    console,
    err,
    model_flags,
    print_json,
    progress_bars,
)
from deepatlas.db.runs import correlation_name
from deepatlas.workspace import DataSource, ModelSource, Workspace

app = typer.Typer(help="Explain single images (influential scores, prediction gradients) and where the graph's measures disagree.",
                  no_args_is_help=True)

ImageOpt = Annotated[int, typer.Option("--image", "-i", help="Index of the image in the split.")]
SplitOpt = Annotated[str, typer.Option(help="train or test.")]
OutOpt = Annotated[Path | None, typer.Option(help="Folder for the PNG. Default: $DEEPATLAS_HOME/out")]


def _workspace(model: ModelSource, data: str, split: str, data_dir: Path | None, device: str, out: Path | None,
               run: str | None = None) -> Workspace:
    """The model (the model flags), the images (--data, --split, --data-dir), the device and the
    figure folder, bound once; with --run, the run's own model and images."""
    return Workspace(run=run, model=model, data=DataSource(data, split, data_dir), device=device, out_dir=out)


#: --run on the commands that explain images: the run's model and images instead of --model / --data.
ExplainRunOpt = Annotated[str | None, typer.Option(
    "--run", help="Explain with a run's own model and images (its data set, split and number of images) instead of "
    "--model and --data.")]


@app.command()
@cli_errors
@model_flags()
def heatmap(
    image: ImageOpt,
    class_name: Annotated[str | None, typer.Option("--class", "-c", help="Only this class (default: every class).")] = None,
    method: Annotated[str | None, typer.Option(help="influence (influential scores) or gradient (d logit / d pixel). "
                                               "Default: influence, or gradient where the influence rules do not "
                                               "cover the model (a ViT's attention; the output says so).")] = None,
    model: ModelSource = None,  # type: ignore[assignment]  # becomes the model flags (model_flags)
    data: DataSpecOpt = "fashion-mnist",
    split: SplitOpt = "test",
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    out: OutOpt = None,
    run: ExplainRunOpt = None,
    shared_scale: Annotated[bool, typer.Option("--shared-scale/--own-scale",
                                               help="One colour scale for every class's map (compare strengths across "
                                                    "classes), or each map on its own (see each map's shape).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Input score images of one image for each class: red pushes toward the class, blue away."""
    from deepatlas.workflows.explain import explain_heatmap
    res = explain_heatmap(_workspace(model, data, split, data_dir, device, out, run), image, class_name=class_name,
                          method=method, shared_scale=shared_scale).to_json()
    if json_out:
        print_json(res)
        return
    console.print(f"image {res['image']}: label [bold]{res['label']}[/], predicted [bold]{res['predicted']}[/]")
    if res.get("note"):
        err.print(res["note"], style="yellow", highlight=False)
    for c in res["classes"]:
        console.print(f"  {c['class']:<12} p={res['probabilities'][c['class']]:.3f}  +{c['positive']:.3g} / {c['negative']:.3g}")
    console.print(f"figure {res['figure']}")


@app.command()
@cli_errors
@model_flags()
def filters(
    image: ImageOpt,
    class_name: Annotated[str | None, typer.Option("--class", "-c", help="Target class (default: the predicted one).")] = None,
    model: ModelSource = None,  # type: ignore[assignment]
    data: DataSpecOpt = "fashion-mnist",
    split: SplitOpt = "test",
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    out: OutOpt = None,
    run: ExplainRunOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Each filter's influential score on the predicted class for one image, as bars."""
    from deepatlas.workflows.explain import explain_filters
    res = explain_filters(_workspace(model, data, split, data_dir, device, out, run), image, class_name=class_name).to_json()
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
    run: RunOpt = None,
    class_name: Annotated[str | None, typer.Option("--class", "-c", help="Only this class.")] = None,
    by: Annotated[str, typer.Option(help="influence or gradient.")] = "influence",
    k: Annotated[int, typer.Option("-k", min=1, help="'Strong' means in the class's top k.")] = 10,
    min_r: Annotated[float, typer.Option(help="Correlated means r at least this.")] = 0.5,
    json_out: JsonOpt = False,
) -> None:
    """Units strongly correlated with a class but with little influence on it, and the reverse."""
    from deepatlas.workflows.explain import disagreement
    with Workspace(run=run) as ws:
        res = disagreement(ws, class_name=class_name, by=by, min_r=min_r, k=k).to_json()
    if json_out:
        print_json(res)
        return
    for key in (f"correlated_not_{by}", f"{by}_not_correlated"):
        table = Table(title=f"{res['run']}: {key.replace('_', ' ')} (r = {correlation_name(res['correlation'])})")
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
    hold the top ranks when the inputs are sorted by their influential score on the output node
    the relevant inputs raise (the paper's Y_1), signed, in descending order; the |score| ranking
    and the score on the predicted node are shown beside it as labelled variants.
    """
    from deepatlas.explain.rank import rank_experiment

    with progress_bars(not json_out) as progress:
        res = rank_experiment(dataset, n_train=n_train, n_test=n_test, epochs=epochs, seed=seed,
                              progress=lambda n: progress("train", n, epochs))
    if json_out:
        print_json(res)
        return
    console.print(f"{dataset}: relevant inputs {res['relevant']}; |Y1 error| {res['mae_y1']:.4f}; scored on output node "
                  f"{res['node']}, the one the relevant inputs raise (the paper's Y_1)", highlight=False)
    table = Table(title=f"{dataset}, seed {res['seed']}: how the {len(res['relevant'])} relevant inputs rank among 10")
    for col in ("ranking", "relevant inputs hold the top ranks", "an irrelevant input outranks a relevant one"):
        table.add_column(col, justify="left" if col == "ranking" else "right")
    table.add_row("signed score on Y_1, descending (the paper's)", f"{res['top_ranks']:.1%}", f"{res['outranked']:.1%}",
                  style="bold")
    labels = {"raised-abs": "|score| on Y_1", "predicted-signed": "signed score on the predicted node",
              "predicted-abs": "|score| on the predicted node"}
    for key, label in labels.items():
        v = res["variants"][key]
        table.add_row(f"variant: {label}", f"{v['top_ranks']:.1%}", f"{v['outranked']:.1%}")
    console.print(table)
    console.print("  mean rank per input (signed, Y_1): " + ", ".join(f"X{i} {r:.2f}" for i, r in enumerate(res["mean_rank"])))


UnitsOpt = Annotated[str, typer.Option(help="Rows of a conv layer: maps (every position of every feature map, the paper's) or channel-means.")]
PooledOpt = Annotated[bool, typer.Option("--pooled/--no-pooled", help="With --units maps: factor the map after the layer's pooling, when one follows.")]


def _ranks(rank: list[int] | None) -> list[int]:
    return rank or [1, 2, 4, 8, 16, 32]


@app.command()
@cli_errors
@model_flags()
def factors(
    rank: Annotated[list[int] | None, typer.Option("--rank", "-r", help="Rank(s); repeat for a sweep. Default 1,2,4,8,16,32.")] = None,
    model: ModelSource = None,  # type: ignore[assignment]
    data: DataSpecOpt = "fashion-mnist",
    split: SplitOpt = "test",
    data_dir: DataDirOpt = None,
    images: Annotated[int, typer.Option(min=10, help="Images factored (a seeded random sample of the split; no labels used).")] = 2000,
    units: UnitsOpt = "maps",
    pooled: PooledOpt = True,
    iters: Annotated[int, typer.Option(min=10, help="Multiplicative-update iterations.")] = 300,
    seed: Annotated[int, typer.Option(help="Seeds the image sample and the initialisation.")] = 0,
    device: DeviceOpt = "auto",
    out: OutOpt = None,
    run: ExplainRunOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Coupled non-negative factorisation of pixels and activations (shared image factor):
    RMSE per rank, singular-value spectra, latent images, unit x factor heatmaps."""
    from deepatlas.workflows.cores import explain_factors

    ws = _workspace(model, data, split, data_dir, device, out, run)
    with progress_bars(not json_out) as ws.progress:
        res = explain_factors(ws, _ranks(rank), images=images, units=units, pooled=pooled, iters=iters, seed=seed).to_json()
    if json_out:
        print_json(res)
        return
    ranks = res["ranks"]
    table = Table(title=f"{res['run'] + ': ' if res.get('run') else ''}coupled NMF of {res['images']} images, relative error per layer "
                        f"({res['units']})")
    table.add_column("layer", overflow="fold")
    table.add_column("rows (source)", overflow="fold")
    for row in ranks:
        table.add_column(f"rank {row['rank']}", justify="right")
    table.add_row("all layers", "", *(f"{row['relative_error']:.4f}" for row in ranks), style="bold")
    for layer in ranks[0]["rmse"]:
        info = res["rows"].get(layer)
        table.add_row(layer, f"{info['rows']} ({info['source']})" if info else "", *(f"{row['rmse'][layer]:.4f}" for row in ranks))
    console.print(table)
    for name, path in res["figures"].items():
        console.print(f"figure {name}: {path}")


@app.command()
@cli_errors
def compare(
    models: Annotated[list[Path], typer.Argument(help="Two or more checkpoints (e.g. trained on 25/50/75/100% of the data).")],
    rank: Annotated[list[int] | None, typer.Option("--rank", "-r", help="Ranks; default 1,2,4,8,16,32.")] = None,
    images: Annotated[int, typer.Option(min=10, help="Test images factored (a seeded random sample; no labels used).")] = 2000,
    units: UnitsOpt = "maps",
    pooled: PooledOpt = True,
    iters: Annotated[int, typer.Option(min=10, help="Multiplicative-update iterations.")] = 300,
    data: DataSpecOpt = "fashion-mnist",
    split: SplitOpt = "test",
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Training-quality diagnostic without test labels: RMSE-vs-rank and spectra across checkpoints."""
    from deepatlas.workflows.cores import explain_compare

    ws = Workspace(data=DataSource(data, split, data_dir), device=device, out_dir=out)
    with progress_bars(not json_out) as ws.progress:
        res = explain_compare(ws, models, _ranks(rank), images=images, units=units, pooled=pooled, iters=iters).to_json()
    if json_out:
        print_json(res)
        return
    table = Table(title="relative reconstruction error per rank")
    ranks = [r["rank"] for r in next(iter(res["ranks"].values()))]
    table.add_column("checkpoint")
    for r in ranks:
        table.add_column(f"r={r}", justify="right")
    for name, rows in res["ranks"].items():
        table.add_row(name, *(f"{row['relative_error']:.4f}" for row in rows))
    console.print(table)
    for name, path in res["figures"].items():
        console.print(f"figure {name}: {path}")


@app.command()
@cli_errors
@model_flags()
def feature(
    image: ImageOpt,
    class_name: Annotated[str | None, typer.Option("--class", "-c", help="For this class (default: the image's own).")] = None,
    layer: Annotated[list[str] | None, typer.Option("--layer", help="Layers searched (default: every captured conv layer).")] = None,
    score: Annotated[str, typer.Option(help="pg: arg-max of the prediction gradient (the thesis); activation-x-pg: of A x PG.")] = "pg",
    output: Annotated[str, typer.Option(help="y is the class's logit or its probability (prob).")] = "logit",
    model: ModelSource = None,  # type: ignore[assignment]
    data: DataSpecOpt = "fashion-mnist",
    split: SplitOpt = "test",
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    out: OutOpt = None,
    run: ExplainRunOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The most characteristic feature of an image: the unit and region with the largest
    prediction gradient (--score activation-x-pg: activation x gradient). E.g. what makes this
    shirt look like a coat: --class Coat."""
    from deepatlas.workflows.explain import explain_feature
    res = explain_feature(_workspace(model, data, split, data_dir, device, out, run), image, class_name=class_name, layers=layer,
                          score=score, output=output).to_json()
    if json_out:
        print_json(res)
        return
    console.print(f"image {res['image']} ({res['label']}) as {res['class']}: unit [bold]{res['unit']}[/] at "
                  f"{res['position']}, pixels x {res['region'][0]}..{res['region'][2] - 1}, y {res['region'][1]}..{res['region'][3] - 1}"
                  if res["region"] else f"image {res['image']} ({res['label']}) as {res['class']}: unit [bold]{res['unit']}[/]")
    label = "prediction gradient" if res["score_kind"] == "pg" else "activation x gradient"
    console.print(f"  score ({label}) {res['score']:.4f}\nfigure {res['figure']}")


@app.command()
@cli_errors
@model_flags()
def perturb(
    image: Annotated[int | None, typer.Option("--image", "-i", help="Index of the image in the split.")] = None,
    toward: Annotated[str | None, typer.Option("--toward", "-t", help="Target class.")] = None,
    steps: Annotated[int, typer.Option(min=1, max=1000, help="Steps.")] = 20,
    step_size: Annotated[float, typer.Option(help="Largest change of any pixel per step (pixels are in [0, 1]).")] = 0.02,
    sweep: Annotated[int | None, typer.Option(help="Instead: perturb this many images toward every other class and report success and induced error.")] = None,
    mode: Annotated[str, typer.Option(help="For --sweep: single-step (one step x + eps * dy/dx per step size, the thesis') or iterative (normalised steps, --steps x --step-size).")] = "single-step",
    eps: Annotated[str | None, typer.Option(help="For --sweep single-step: comma-separated step sizes. Default 1,3,10,30,100,300,1000.")] = None,
    output: Annotated[str, typer.Option(help="For --sweep single-step: y is the probability (prob, the thesis') or the logit.")] = "prob",
    model: ModelSource = None,  # type: ignore[assignment]
    data: DataSpecOpt = "fashion-mnist",
    split: SplitOpt = "test",
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    out: OutOpt = None,
    run: ExplainRunOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Nudge an image toward a class along d y_C / d x and watch the verdict. --sweep N: the
    thesis' experiment, one gradient step per step size toward every other class, with the
    success at the target and the error it induces (--mode iterative: the flip-success matrix
    of iterative normalised steps)."""
    from deepatlas.errors import UsageError
    from deepatlas.workflows.explain import explain_perturb, perturb_sweep

    if step_size <= 0:
        raise UsageError(f"--step-size must be > 0, got {step_size}")
    ws = _workspace(model, data, split, data_dir, device, out, run)
    if sweep is not None:
        from deepatlas.workflows.explain import STEP_SIZES

        step_sizes = None
        if eps is not None:
            try:
                step_sizes = [float(t) for t in eps.split(",") if t.strip()]
            except ValueError:
                raise UsageError(f"--eps must be comma-separated numbers, got {eps!r}") from None
        with progress_bars(not json_out) as ws.progress:
            res = perturb_sweep(ws, images=sweep, mode=mode, output=output, steps=steps, step_size=step_size,
                                step_sizes=step_sizes if step_sizes is not None else STEP_SIZES).to_json()
        if json_out:
            print_json(res)
            return
        if res["mode"] == "single-step":
            y = "p" if res["output"] == "prob" else "logit"
            console.print(f"one step x + eps * d{y}(target)/dx: {res['images']} images x every other class ({res['pairs']} pairs)")
            for e, su, er in zip(res["step_sizes"], res["success"], res["induced_error"], strict=True):
                console.print(f"  eps {e:>8g}: success at the target {su:.3f}   induced error {er:.3f}")
            console.print(f"figure {res['figure']}")
            return
        console.print(f"flip success within {steps} steps of {step_size}, {res['images']} images; easiest targets:")
        for name, rate in sorted(res["target_success"].items(), key=lambda kv: -kv[1]):
            console.print(f"  {name:<12} {rate:.2f}")
        console.print(f"figure {res['figure']}")
        return
    if image is None or toward is None:
        raise UsageError("give --image and --toward (or --sweep N)")
    res = explain_perturb(ws, image, toward, steps=steps, step_size=step_size).to_json()
    if json_out:
        print_json(res)
        return
    flip = res["flip_step"]
    console.print(f"image {res['image']} ({res['label']}, predicted {res['original']}) toward {res['toward']}: "
                  + (f"flips at step [bold]{flip}[/]" if flip is not None else f"no flip within {steps} steps"))
    for i in range(0, len(res["target_prob"]), max(1, len(res["target_prob"]) // 10)):
        console.print(f"  step {i:>3}: p({res['toward']}) = {res['target_prob'][i]:.3f}, p({res['original']}) = "
                      f"{res['original_prob'][i]:.3f}, predicted {res['predicted'][i]}")
    console.print(f"figure {res['figure']}")
