"""`deepatlas experiment knockout|activate|community|shared`: test the graph's claims on the model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from deepatlas.cli._common import (
    DataDirOpt,
    DeviceOpt,
    JsonOpt,
    RunOpt,
    cli_errors,
    console,
    model_flags,
    print_json,
    progress_bars,
)
from deepatlas.errors import UsageError
from deepatlas.workspace import DataSource, ModelSource, Workspace

app = typer.Typer(help="Knock units out or drive them alone, and record what the model then predicts.", no_args_is_help=True)

LayerOpt = Annotated[str | None, typer.Option(help="Layer whose units are ranked. Default: the first dense layer.")]
ByOpt = Annotated[str, typer.Option(help="Ranking: coactivation (r), gradient or influence.")]
NoRecord = Annotated[bool, typer.Option("--no-record", help="Do not store an Experiment node.")]


def _workspace(run: str | None, model: ModelSource, data_dir: Path | None, device: str, out: Path | None) -> Workspace:
    """The run (its own data set; ``data_dir`` says where a built-in one's files are), the model
    flags, the device and the figure folder, bound once."""
    return Workspace(run=run, model=model, data=DataSource(data_dir=data_dir), device=device, out_dir=out)


def _ks(text: str) -> list[int]:
    """``0,1,2,4`` or a range ``0-32`` (every k: the curve as units go one by one)."""
    try:
        ks: list[int] = []
        for part in (t.strip() for t in text.split(",") if t.strip()):
            lo, sep, hi = part.partition("-")
            ks += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
    except ValueError:
        raise UsageError(f"--ks must be comma-separated integers or ranges like 0-32, got {text!r}") from None
    if not ks or any(k < 0 or k > 100_000 for k in ks):
        raise UsageError(f"--ks must hold integers in 0..100000, got {text!r}")
    return ks


@app.command()
@cli_errors
@model_flags(of_run=True)
def knockout(
    class_name: Annotated[str, typer.Option("--class", "-c", help="Class whose units are ranked.")],
    run: RunOpt = None,
    layer: Annotated[str | None, typer.Option(help="Layer whose units are ranked, or 'all'. Default: all conv layers for "
                                                   "--rank-by pg, the first dense layer otherwise.")] = None,
    by: Annotated[str, typer.Option("--rank-by", "--by", help="pg (L2 norm of the class-averaged prediction gradient, "
                                                             "from the model; the thesis'), coactivation, influence or gradient (stored edges).")] = "pg",
    output: Annotated[str, typer.Option(help="For --rank-by pg: y is the class probability (prob, the thesis') or the logit.")] = "prob",
    ks: Annotated[str, typer.Option(help="k values: 0,1,2,4 or a range 0-32 for the one-by-one curve.")] = "0,1,2,4,8,16,32,64",
    value: Annotated[str, typer.Option(help="zero, or mean (the unit's data-set mean output).")] = "zero",
    seeds: Annotated[int, typer.Option(min=1, max=100, help="Random baselines.")] = 5,
    model: ModelSource = None,  # type: ignore[assignment]  # becomes the model flags (model_flags)
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    out: Annotated[Path | None, typer.Option(help="Folder for the curve PNG. Default: $DEEPATLAS_HOME/out")] = None,
    no_record: NoRecord = False,
    json_out: JsonOpt = False,
) -> None:
    """Knockout curves: class and overall error as the top-k, bottom-k and random-k units go.

    Default (the thesis): the conv filters of every conv layer ranked together by the L2 norm
    of their class-averaged prediction gradient; strongest k vs weakest k. If the ranking is
    right, knocking out a class's top units hurts that class far more than its bottom units or
    random ones.
    """
    from deepatlas.workflows.experiments import experiment_knockout
    with _workspace(run, model, data_dir, device, out) as ws, progress_bars(not json_out) as ws.progress:
        res = experiment_knockout(ws, class_name, layer=layer, by=by, output=output, ks=_ks(ks), value=value, seeds=seeds,
                                  record=not no_record).to_json()
    if json_out:
        print_json(res)
        return
    what = {"pg": "PG norm", "coactivation": "r"}.get(res["by"], res["by"])
    top, bottom = ("strongest", "weakest") if res["by"] == "pg" else ("top", "bottom")
    table = Table(title=f"{res['run']}: knockout in {res['layer']} ({len(res['layers_ranked'])} layers, {res['units_ranked']} units) "
                        f"ranked by {what} for {res['class']}")
    for col in ("k", f"{top}: class err", f"{bottom}: class err", "random: class err", f"{top}: overall", "random: overall"):
        table.add_column(col, justify="right")
    r = res["random"]
    for i, k in enumerate(res["top"]["k"]):
        table.add_row(str(k), f"{res['top']['class_error'][i]:.3f}", f"{res['bottom']['class_error'][i]:.3f}",
                      f"{r['class_error_mean'][i]:.3f} ± {r['class_error_std'][i]:.3f}", f"{res['top']['error'][i]:.3f}",
                      f"{r['error_mean'][i]:.3f}")
    console.print(table)
    console.print(f"figure {res.get('figure')}  experiment {res.get('experiment', '(not recorded)')}")


@app.command()
@cli_errors
@model_flags(of_run=True)
def activate(
    k: Annotated[list[int] | None, typer.Option("-k", help="k values (repeat -k); default 1,2,3,5,7,10,15,20,30.")] = None,
    run: RunOpt = None,
    layer: LayerOpt = None,
    by: ByOpt = "coactivation",
    value: Annotated[str, typer.Option(help="class-mean (the units' mean over the class) or max.")] = "class-mean",
    model: ModelSource = None,  # type: ignore[assignment]
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    out: Annotated[Path | None, typer.Option(help="Folder for the PNG. Default: $DEEPATLAS_HOME/out")] = None,
    no_record: NoRecord = False,
    json_out: JsonOpt = False,
) -> None:
    """Drive only each class's top-k units (all others 0): does the model predict that class?

    Example: deepatlas experiment activate -k 7 --json
    """
    from deepatlas.workflows.experiments import experiment_activate
    ks = k or [1, 2, 3, 5, 7, 10, 15, 20, 30]
    if any(x < 1 for x in ks):
        raise UsageError("k must be >= 1")
    with _workspace(run, model, data_dir, device, out) as ws, progress_bars(not json_out) as ws.progress:
        res = experiment_activate(ws, layer=layer, by=by, ks=ks, value=value, record=not no_record).to_json()
    if json_out:
        print_json(res)
        return
    table = Table(title=f"{res['run']}: activate only the top-k units of each class in {res['layer']}")
    table.add_column("class")
    for kk in res["ks"]:
        table.add_column(f"k={kk}")
    table.add_column("smallest k")
    for row in res["classes"]:
        cells = ["[green]✓[/]" if p == row["class"] else f"[red]{p}[/]" for p in row["predicted"]]
        table.add_row(row["class"], *cells, str(row["smallest_k"] or "-"))
    table.add_row("fraction", *(f"{f:.1f}" for f in res["fraction_correct"]), "")
    console.print(table)
    console.print(f"figure {res.get('figure')}")


@app.command()
@cli_errors
@model_flags(of_run=True)
def community(
    index: Annotated[int, typer.Option("--community", help="Community index (see `deepatlas analyze communities`).")],
    run: RunOpt = None,
    value: Annotated[str, typer.Option(help="zero or mean.")] = "zero",
    model: ModelSource = None,  # type: ignore[assignment]
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    no_record: NoRecord = False,
    json_out: JsonOpt = False,
) -> None:
    """Knock out a whole community's neurons; the error of each class before and after."""
    from deepatlas.workflows.experiments import experiment_community
    with _workspace(run, model, data_dir, device, None) as ws:
        res = experiment_community(ws, index, value=value, record=not no_record).to_json()
    if json_out:
        print_json(res)
        return
    table = Table(title=f"{res['run']}: community {index} ({res['units']} neurons; classes {', '.join(res['community_classes']) or '-'}) knocked out")
    for col in ("class", "error before", "error after", "change"):
        table.add_column(col, justify="right")
    for row in res["per_class"]:
        table.add_row(row["class"], f"{row['error_before']:.3f}", f"{row['error_after']:.3f}", f"{row['change']:+.3f}")
    console.print(table)


@app.command()
@cli_errors
@model_flags(of_run=True)
def shared(
    a: Annotated[str, typer.Option("--a", help="First class.")],
    b: Annotated[str, typer.Option("--b", help="Second class.")],
    run: RunOpt = None,
    value: Annotated[str, typer.Option(help="zero or mean.")] = "zero",
    seeds: Annotated[int, typer.Option(min=1, max=100, help="Random same-size baselines.")] = 5,
    model: ModelSource = None,  # type: ignore[assignment]
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    no_record: NoRecord = False,
    json_out: JsonOpt = False,
) -> None:
    """Knock out the neurons two classes share (needs `analyze overlap`); their mutual mistakes."""
    from deepatlas.workflows.experiments import experiment_shared
    with _workspace(run, model, data_dir, device, None) as ws:
        res = experiment_shared(ws, a, b, value=value, seeds=seeds, record=not no_record).to_json()
    if json_out:
        print_json(res)
        return
    rnd = res["random_same_size_mutual_mistakes"]
    console.print(f"{res['a']} / {res['b']}: {len(res['shared_units'])} shared units ({', '.join(res['shared_units'])})")
    console.print(f"  mutual mistakes {res['mutual_mistakes_before']} -> {res['mutual_mistakes_after']} "
                  f"(random same-size sets: {rnd['mean']:.1f} ± {rnd['std']:.1f})")


@app.command()
@cli_errors
@model_flags(of_run=True)
def switchgate(
    class_name: Annotated[str, typer.Option("--class", "-c", help="Class whose core units to find.")],
    layer: Annotated[list[str] | None, typer.Option("--layer", help="Gated layer(s); 'input' gates pixels. Default: the last conv block's pooled output.")] = None,
    alpha: Annotated[str | None, typer.Option(help="Price of each open gate (smaller keeps more): a number, or 'auto' to tune it per class to --holding-target. Default auto; 0.001 for --layer input.")] = None,
    holding_target: Annotated[float, typer.Option(min=0.0, max=1.0, help="With --alpha auto: the holding rate (paper's y_b >= 0.5 rule) the largest alpha must keep.")] = 0.995,
    max_fits: Annotated[int, typer.Option(min=1, max=20, help="With --alpha auto: fits in the alpha search.")] = 5,
    scores: Annotated[str, typer.Option(help="The classifier's y: probs (softmax, the paper's) or logits (earlier variant).")] = "probs",
    fixed_wb: Annotated[bool, typer.Option("--fixed-wb", help="Hold the classifier weight w_b at 1 instead of training it.")] = False,
    lam: Annotated[float, typer.Option("--lambda", min=0.0, help="Weight of the 0/1 penalty phi.")] = 1.0,
    steps: Annotated[int, typer.Option(min=10, help="Optimisation steps.")] = 400,
    per_side: Annotated[int, typer.Option(min=10, help="Images per side of the balanced set.")] = 300,
    seeds: Annotated[int, typer.Option(min=1, max=100, help="Random same-size subsets.")] = 5,
    seed: Annotated[int, typer.Option(help="Seeds the random negatives and the mini-batch order.")] = 0,
    repeats: Annotated[int, typer.Option(min=1, max=20, help="Run the search N times (seeds seed..seed+N-1); report how often each unit is kept.")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Mini-batch size.")] = 64,
    run: RunOpt = None,
    model: ModelSource = None,  # type: ignore[assignment]
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    out: Annotated[Path | None, typer.Option(help="Folder for the input-gate PNG. Default: $DEEPATLAS_HOME/out")] = None,
    no_record: NoRecord = False,
    json_out: JsonOpt = False,
) -> None:
    """Core units of a class by Switch Gates: the fewest units that keep the model's verdict.

    Reports the core units kept and the two prediction holding rates with only them open (over
    the balanced set D'_c: positives and as many random negatives, verdict "class or not"
    unchanged) by the paper's rule (y_b >= 0.5) and by the arg-max rule, the share of positives
    still predicted as the class, and each rate for random subsets of the same size. By default
    alpha is tuned per class to the holding target. The Experiment node's TARGETS edges name
    the core units.
    """
    from deepatlas.workflows.cores import experiment_switchgate

    alpha_value: float | str | None = alpha
    if alpha is not None and alpha != "auto":
        try:
            alpha_value = float(alpha)
        except ValueError:
            raise UsageError(f"--alpha must be a number or 'auto', not {alpha!r}") from None
        if alpha_value < 0:
            raise UsageError("--alpha must be >= 0")
    if scores not in ("probs", "logits"):
        raise UsageError(f"--scores must be probs or logits, not {scores!r}")

    with _workspace(run, model, data_dir, device, out) as ws, progress_bars(not json_out) as ws.progress:
        res = experiment_switchgate(ws, class_name, layers=layer, alpha=alpha_value, holding_target=holding_target,
                                    max_fits=max_fits, scores=scores, train_wb=not fixed_wb, lam=lam, steps=steps, per_side=per_side,
                                    seeds=seeds, seed=seed, repeats=repeats, batch_size=batch_size,
                                    record=not no_record).to_json()
    if json_out:
        print_json(res)
        return
    rnd, rnd_pos = res["random_holding_rate"], res["random_positive_holding_rate"]
    for layer_name, n in res["n_kept"].items():
        console.print(f"{res['class']}: {n} of {res['sizes'][layer_name]} units of {layer_name} kept: {res['kept'][layer_name][:40]}")
    rnd_yb = res["random_holding_rate_yb"]
    console.print(f"holding rate over D'_c ({res['positives']} positives + {res['negatives']} random negatives), paper's "
                  f"rule y_b >= 0.5: [bold]{res['holding_rate_yb']:.3f}[/]; random same-size subsets "
                  f"{rnd_yb['mean']:.3f} ± {rnd_yb['std']:.3f}")
    console.print(f"holding rate over D'_c, arg-max rule: [bold]{res['holding_rate']:.3f}[/]; random same-size subsets "
                  f"{rnd['mean']:.3f} ± {rnd['std']:.3f}")
    search = res.get("alpha_search")
    if search:
        tried = ", ".join(f"{t['alpha']:.2g} ({t['holding_rate_yb']:.3f}, {t['n_kept']} kept)" for t in search["alpha_search"])
        console.print(f"alpha {res['alpha']:.3g}, tuned to holding >= {search['holding_target']} by the "
                      f"{search['alpha_rule']} rule ({'reached' if search['target_reached'] else 'NOT reached'}); "
                      f"tried: {tried}")
    else:
        console.print(f"alpha {res['alpha']:.3g} (fixed)")
    console.print(f"positives still predicted {res['class']}: {res['positive_holding_rate']:.3f}; random same-size subsets "
                  f"{rnd_pos['mean']:.3f} ± {rnd_pos['std']:.3f}")
    if "repeats" in res:
        for layer_name, units in res["repeats"]["kept_in_every_repeat"].items():
            console.print(f"kept in all {res['repeats']['n']} repeats ({layer_name}): {units[:40]}; "
                          f"units kept per repeat: {[r[layer_name] for r in res['repeats']['n_kept']]}")
