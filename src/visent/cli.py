"""The ``visent`` command line: crawl bluesky, ingest, teach, clean, embed, train, build, predict, explain, evaluate, report, export,
serve, demo (and backbones, teachers, benchmarks, cache, teacher train/predict)."""

from __future__ import annotations

import inspect
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, List, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from visent.core.display import readable
from visent.core.errors import PathNotFound, UsageError, VisentError, write_error
from visent.core.options import ENGINE_HELP, RAY_ADDRESS_HELP, SEED_HELP
from visent.core.progress import console
from visent.embed.spec import DEFAULT_BACKBONE

stdout = Console()  # results; progress and messages go to stderr


RICH_HELP_WIDTH = 120  # narrower than this (an 80-column terminal, a pipe), --help is plain text


class _Flags:
    """``--help`` shows a flag (``--help`` itself, ``--balance/--no-balance``) as a flag: typer's rich help would
    give it a ``<bool>`` type, as if it took a value. Below :data:`RICH_HELP_WIDTH` columns (an 80-column terminal,
    or help piped to another program, which rich gives 80 columns) the help is click's plain text: typer's rich
    tables squeeze the option names there until they are cut ("--near-dup-dis…"); plain help never cuts one."""

    def get_params(self, ctx: click.Context) -> list:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from typer import rich_utils

        if Console(width=rich_utils.MAX_WIDTH).width >= RICH_HELP_WIDTH:
            return super().format_help(ctx, formatter)  # type: ignore[misc]
        mode, self.rich_markup_mode = self.rich_markup_mode, None  # type: ignore[attr-defined]
        start = len(formatter.buffer)
        try:
            super().format_help(ctx, formatter)  # type: ignore[misc]
        finally:
            self.rich_markup_mode = mode  # type: ignore[attr-defined]
        # help strings escape rich markup ("visent\\[ray]"); plain text shows the bracket itself
        formatter.buffer[start:] = [text.replace("\\[", "[") for text in formatter.buffer[start:]]


class _Command(_Flags, TyperCommand):
    """A command of ``visent`` (every ``@app.command`` names it as its ``cls``)."""


class _RecordCommand(_Command):
    """A command whose options are the fields of a stage's options record (:mod:`visent.core.options`), declared
    with :func:`_record_options`. They are made the first time the command's help or its run needs them: the record
    lives with its stage, and ``visent --help`` or another command imports no stage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._made = False
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def params(self) -> list[click.Parameter]:
        self._make()
        return self._params

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._params = value

    @property  # type: ignore[override]
    def callback(self) -> Any:
        self._make()
        return self._callback

    @callback.setter
    def callback(self, value: Any) -> None:
        self._callback = value

    def _make(self) -> None:
        if self._made or not hasattr(self, "_callback") or not hasattr(self, "_params"):
            return
        import importlib

        from visent.core.options import command

        self._made = True
        where, only, func = inspect.unwrap(self._callback).visent_record  # typer wraps the declared function
        module, name = where.split(":")
        made = typer.Typer(add_completion=False)
        made.command()(command(func, getattr(importlib.import_module(module), name), only))
        real = typer.main.get_command(made)
        self._params, self._callback = real.params, real.callback


def _record_options(record: str, only: tuple[str, ...] | None = None) -> Any:
    """Declare a command (``@app.command(cls=_RecordCommand)`` above this) whose parameter ``options`` is the options
    record ``record`` ("module:Class"): its fields (those in ``only``) become the command's options where
    ``options`` stands (:func:`visent.core.options.command`), and the function gets the record they make."""

    def declare(func: Any) -> Any:
        def declared(**values: Any) -> Any:
            raise AssertionError(f"{func.__name__}: its options were never made")  # _RecordCommand calls func

        declared.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [p for p in inspect.signature(func, eval_str=True).parameters.values() if p.name != "options"])
        declared.__name__, declared.__doc__, declared.__module__ = func.__name__, func.__doc__, func.__module__
        declared.visent_record = (record, only, func)  # type: ignore[attr-defined]
        return declared

    return declare


class _Commands(_Flags, TyperGroup):
    """The command group: a :class:`~visent.core.errors.VisentError` (bad input, a missing file, an option out of
    range, a missing extra) from any command becomes one red line on stderr and exit status 1, and so does a write
    the system refused (no space left, quota, read-only filesystem, no permission: see
    :func:`~visent.core.errors.write_error`). Nothing else is caught: a bug still shows its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (VisentError, OSError) as error:
            line = error if isinstance(error, VisentError) else write_error(error)
            if line is None:
                raise
            command = " ".join([*ctx.command_path.split()[1:], ctx.invoked_subcommand or ""]).strip()
            console.print(f"[bold red]error:[/] {escape(command + ': ' if command else '')}{escape(str(line))}",
                          soft_wrap=True, highlight=False)
            raise typer.Exit(code=1) from None


app = typer.Typer(
    cls=_Commands,
    name="visent",
    help="Image-sentiment classifiers without human labels: a text teacher labels a crawl, an image student learns.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

DEMO_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
               "hubble_deep_field.jpg", "camera.png", "grass.png")


def _run(step: str, func, *args: Any, **kwargs: Any) -> Any:
    """Run a stage and say how long it took (its errors go to the command group's handler)."""
    started = time.time()
    result = func(*args, **kwargs)
    console.print(f"[green]{step} finished[/] in {time.time() - started:.1f} s")
    return result


def _print_counts(title: str, counts: dict[str, Any]) -> None:
    table = Table(title=escape(title), show_header=True, header_style="bold")
    table.add_column("step / class")
    table.add_column("count", justify="right")
    for key, value in counts.items():
        table.add_row(escape(str(key)), escape(readable(value)))
    stdout.print(table)


# Options of the commands that are not a stage's (the stages' own come from their records) ---------------------
ENGINE = typer.Option("local", "--engine", help=ENGINE_HELP)
RAY_ADDRESS = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP)
SEED = typer.Option(0, "--seed", help=SEED_HELP)


crawl_app = typer.Typer(cls=_Commands, help="Gather posts that carry text and an image from the open social web "
                                              "into a crawl folder that `visent ingest` and `visent build` read.",
                        no_args_is_help=True)
app.add_typer(crawl_app, name="crawl")


@crawl_app.command("bluesky", cls=_Command)
def crawl_bluesky(
    out: Path = typer.Option(..., "--out", "-o", help="Crawl folder to create, or to continue (the same command "
                                                      "resumes from its cursor)."),
    source: str = typer.Option("jetstream", "--source", help="jetstream (JSON, default) or firehose (the relay's "
                                                             "com.atproto.sync.subscribeRepos, DAG-CBOR)."),
    endpoint: List[str] = typer.Option([], "--endpoint", help="WebSocket URL of the stream, repeatable (tried in "
                                                              "turn); default: Bluesky's public hosts."),
    posts: Optional[int] = typer.Option(None, "--posts", min=1, help="Stop once the crawl holds N image posts."),
    duration: Optional[str] = typer.Option(None, "--duration", help="Stop after this long: 45s, 30m, 72h, 2d."),
    lang: Optional[str] = typer.Option(None, "--lang", help="Keep posts in these languages only, e.g. en,fr (the "
                                                            "post's own langs; default: every language)."),
    replies: bool = typer.Option(True, "--replies/--no-replies", help="Keep replies."),
    per_author: int = typer.Option(20, "--per-author", min=0, help="Posts kept from one author per hour at most, "
                                                                   "against spam bots (0: no cap)."),
    min_words: int = typer.Option(3, "--min-words", min=0, help="Leave out posts with fewer words of text."),
    cdn: str = typer.Option("https://cdn.bsky.app/img", "--cdn", help="Base URL of the image CDN."),
    image_size: str = typer.Option("thumbnail", "--image-size", help="thumbnail (default: enough for the student) "
                                                                     "or fullsize."),
    keep_labelled: bool = typer.Option(False, "--keep-labelled", help="Keep posts their authors labelled as adult "
                                                                      "content (left out by default)."),
    shard_posts: int = typer.Option(5000, "--shard-posts", min=1, help="Rows per shard."),
    shard_seconds: float = typer.Option(60.0, "--shard-seconds", min=0.01, help="Commit a shard (and the cursor) "
                                                                                "at least this often."),
    cursor: Optional[int] = typer.Option(None, "--cursor", help="Start a new crawl at this stream position "
                                                                "(Jetstream v1: unix microseconds; else a seq)."),
) -> None:
    """Crawl image posts from Bluesky (Jetstream or the relay firehose) for as long as asked, resumably."""
    import signal

    from visent.core.progress import status
    from visent.crawl import crawl_bluesky as run_crawl
    from visent.crawl.events import langs_option

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)  # stop like Ctrl-C: the shard in progress is committed
    with status(f"crawl {source}") as say:
        def _show(c: dict[str, Any]) -> None:
            lag = "" if c["lag"] is None else f" · cursor {c['lag']} behind now"
            say(f"{readable(c['events_per_s'])} events/s · {c['posts']:,} posts kept · {c['images']:,} images · "
                f"{c['tombstones']:,} deleted{lag} · shard {c['shards']}")

        counts = _run("crawl", run_crawl, out, source=source, endpoints=list(endpoint) or None, posts=posts,
                      duration=duration, langs=langs_option(lang), replies=replies, per_author_hour=per_author,
                      min_words=min_words, cdn=cdn, image_size=image_size, keep_labelled=keep_labelled,
                      shard_rows=shard_posts, shard_seconds=shard_seconds, cursor=cursor, on_progress=_show)
    _print_counts(f"crawl → {out}", {k: v for k, v in counts.items() if v not in ("", {}, None)})


@app.command(cls=_RecordCommand)
@_record_options("visent.ingest.options:IngestOptions")
def ingest(
    source: Path = typer.Argument(..., help="MVSA folder, JSONL/CSV of posts, tweet JSON (API v1.1 or v2), a crawl "
                                                "folder of `visent crawl`, or a folder of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to create or resume."),
    options: Any = None,
) -> None:
    """Read a crawl of posts into a dataset: one row per post, images stored by content hash."""
    from visent.ingest import ingest as run_ingest

    runner = _engine(options.engine, options.ray_address)
    counts = _run("ingest", run_ingest, source, out, replace(options, engine=runner))
    _print_counts(f"ingest → {out}", counts)
    _print_placement(runner)


@app.command(cls=_RecordCommand)
@_record_options("visent.teach.options:TeachOptions")
def teach(
    dataset: Path = typer.Argument(..., help="Dataset directory made by `visent ingest`."),
    options: Any = None,
) -> None:
    """Label every post's text with the teacher's negative / neutral / positive probabilities."""
    from visent.teach import teach as run_teach

    runner = _engine(options.engine, options.ray_address)
    counts = _run("teach", run_teach, dataset, options=replace(options, engine=runner))
    _print_counts(f"teach ({options.teacher})", counts)
    _print_placement(runner)


@app.command(cls=_RecordCommand)
@_record_options("visent.clean.options:CleanOptions")
def clean(
    dataset: Path = typer.Argument(..., help="Dataset directory after `visent teach`."),
    options: Any = None,
) -> None:
    """Clean the weak labels: bad images, duplicates, near duplicates, low confidence, optional balancing."""
    from visent.clean import clean as run_clean

    counts = _run("clean", run_clean, dataset, options)
    _print_counts("clean: counts per step", counts)
    _print_skipped_earlier(_lost_posts(dataset))


@app.command(cls=_RecordCommand)
@_record_options("visent.train.options:TrainOptions", only=("backbone", "runtime", "tta", "int8_calibration"))
def embed(
    dataset: Path = typer.Argument(..., help="Dataset directory after `visent clean`."),
    options: Any = None,
    batch_size: int = typer.Option(32, min=1, help="Images per batch."),
    chunk_size: int = typer.Option(256, min=1, help="Images per engine task and per cache file."),
    engine: str = ENGINE, ray_address: Optional[str] = RAY_ADDRESS,
) -> None:
    """Fill the feature cache with the kept images' features, so that `visent train` with the same --backbone,
    --runtime, --tta and --int8-calibration reads them instead of computing them."""
    from visent.embed.dataset import embed_dataset

    runner = _engine(engine, ray_address)
    counts = _run("embed", embed_dataset, dataset, options.backbone, runtime=options.runtime, tta=options.tta,
                  batch_size=batch_size, chunk_size=chunk_size, engine=runner,
                  int8_calibration=options.int8_calibration)
    for name, values in counts.items():
        _print_counts(f"embed ({name})", values)
    _print_placement(runner)


def _engine(name: str, address: Optional[str]) -> Any:
    """The engine of --engine/--ray-address (an unknown one is an EngineError)."""
    from visent.engine import get_engine

    return get_engine(name, address=address)


def _print_placement(engine: Any) -> None:
    """Where a cluster ran the stage's batches (nothing for the local engine, or when no batch ran)."""
    if getattr(engine, "placement", None):
        console.print(f"{engine.name}: {engine.describe()}", markup=False, highlight=False)


@app.command(cls=_RecordCommand)
@_record_options("visent.train.options:TrainOptions")
def train(
    dataset: Path = typer.Argument(..., help="Dataset directory after `visent clean`."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    options: Any = None,
) -> None:
    """Train the visual student on the kept posts' images and teacher labels (never human labels). A model already
    trained on the same kept posts with the same options is left as it is."""
    from visent.train import train as run_train

    model = _run("train", run_train, dataset, out, options)
    _print_train_summary(model.metrics, out)


def _print_train_summary(metrics: dict[str, Any], out: Path, *, explain: bool = False) -> None:
    """The model's line; with ``explain`` (build's summary) what its validation figure is, and is not."""
    validation = metrics.get("validation", {})
    chosen = validation.get("chosen", {})
    console.print(f"model → [bold]{escape(str(out))}[/]: {readable(metrics['n_train_posts'])} images "
                  f"({readable(metrics['class_counts'])}), C = {readable(metrics['C'])}, validation vs teacher: "
                  f"balanced accuracy {chosen.get('val_balanced_accuracy', float('nan')):.3f}")
    classes = [n for n in (validation.get("val_class_counts") or {}).values() if n > 0]
    if explain and "val_balanced_accuracy" in chosen and classes:
        held_out = f"{validation['n_val']:,} " if validation.get("n_val") else ""
        _indented(f"that is the student's agreement with the teacher's labels on {held_out}held-out kept posts, "
                  f"balanced over {len(classes)} classes (chance {1 / len(classes):.2f}, full agreement 1), not its "
                  "accuracy on human labels: `visent evaluate` measures that (see next)")
    notes = metrics.get("warnings") or []
    for note in notes:
        console.print(f"[bold yellow]warning:[/] the model is likely of no use: {escape(note)}", highlight=False)
    if notes:
        console.print(f"  see {escape(str(out / 'MODEL_CARD.md'))}; train on more posts and check the model on human "
                      "labels with `visent evaluate`", highlight=False)


@app.command(cls=_RecordCommand)
@_record_options("visent.build.stage:BuildOptions")
def build(
    source: Path = typer.Argument(..., help="The crawl: MVSA folder, JSONL/CSV, tweet JSON, or a folder of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    dataset: Optional[Path] = typer.Option(None, help="Dataset directory (default: <out>-dataset beside the model)."),
    options: Any = None,
) -> None:
    """The main job: ingest → teach → clean → train, with good defaults. Finished stages are skipped."""
    from visent.build import build as run_build

    summary = _run("build", run_build, source, out, dataset=dataset, options=options)
    _print_counts("ingest", summary["ingest"])
    _print_counts("teach", summary["teach"])
    _print_counts("clean: counts per step", summary["clean"])
    lost = _lost_posts(summary["dataset"])
    _print_skipped_earlier(lost)
    _print_reasons(lost)
    console.print(f"dataset → [bold]{escape(str(summary['dataset']))}[/]")
    from visent.model import VisentModel

    _print_train_summary(VisentModel.load(out).metrics, out, explain=True)
    _print_next(Path(summary["dataset"]), out)


def _lost_posts(dataset: str | Path) -> dict[str, Any]:
    """The posts each stage could not use and why, by kind of reason (:func:`visent.report.reason_kind`, as the
    report counts them): ``ingest`` (errors), ``teach`` (texts skipped, posts ingest could not read left out),
    ``clean`` (dropped: an ingest error is one kind, its reasons are ingest's), and ``skipped_earlier``, the steps
    of clean that dropped posts the teacher skipped before their no-teacher-label step. Empty when the dataset
    cannot be read (the summary then goes without it)."""
    from collections import Counter

    import pyarrow as pa

    from visent.core.store import Dataset
    from visent.report import reason_kind
    from visent.teach.stage import not_read_by_ingest

    try:
        ds = Dataset(dataset)
        posts = ds.read_table("posts", columns=["post_id", "text", "ingest_status", "ingest_reason"])
        teach = ds.read_table("teach", columns=["post_id", "teach_status", "teach_reason"])
        clean = ds.read_table("clean", columns=["post_id", "clean_step", "clean_reason"])
    except (VisentError, OSError, ValueError, pa.ArrowException):
        return {}
    unread = not_read_by_ingest(posts)
    ingest = Counter(reason_kind(reason or "no reason given") for state, reason
                     in zip(posts.column("ingest_status").to_pylist(), posts.column("ingest_reason").to_pylist())
                     if state != "ok")
    skipped = {post_id: (reason or "no reason given").split(":")[0].strip() for post_id, state, reason
               in zip(*(teach.column(name).to_pylist() for name in ("post_id", "teach_status", "teach_reason")))
               if state == "skipped" and post_id not in unread}
    steps = dict(zip(clean.column("post_id").to_pylist(), clean.column("clean_step").to_pylist()))
    dropped = Counter("ingest error" if step == "ingest_error" else reason_kind(reason) for step, reason
                      in zip(clean.column("clean_step").to_pylist(), clean.column("clean_reason").to_pylist()) if step)
    earlier = Counter(steps[post_id] for post_id in skipped if steps.get(post_id) not in (None, "no_teacher_label"))
    return {"ingest": ingest, "teach": Counter(skipped.values()), "not_read": len(unread), "clean": dropped,
            "skipped_earlier": earlier}


def _print_skipped_earlier(lost: dict[str, Any]) -> None:
    """Why clean's no_teacher_label is smaller than the posts the teacher skipped: earlier steps dropped some."""
    earlier = lost.get("skipped_earlier")
    if earlier:
        teach = sum(lost["teach"].values())
        _indented(f"no_teacher_label counts {teach - sum(earlier.values()):,} of the {teach:,} posts the teacher "
                  "skipped: earlier steps dropped the others ("
                  + ", ".join(f"{step} {n:,}" for step, n in earlier.most_common()) + ")", indent=0)


def _print_reasons(lost: dict[str, Any], top: int = 4) -> None:
    """The most frequent reasons each stage gave for the posts it could not use, with their counts."""
    lines = []
    for stage, what in (("ingest", "ingest errors"), ("teach", "teacher skipped"), ("clean", "clean dropped")):
        kinds = lost.get(stage)
        if not kinds:
            continue
        shown = "; ".join(f"{kind} {n:,}" for kind, n in kinds.most_common(top))
        more = len(kinds) - top
        lines.append(f"{what} ({sum(kinds.values()):,}): {shown}"
                     + (f"; {more} other reason{'s' if more > 1 else ''}" if more > 0 else ""))
    if lost.get("not_read"):
        n = lost["not_read"]
        lines.insert(1 if lost.get("ingest") else 0, f"not taught ({n:,}): ingest error and no text (among the "
                                                     "ingest errors)")
    if lines:
        console.print("why posts were not used (most frequent first; `visent report` lists every reason):",
                      highlight=False)
        for line in lines:
            _indented(line)


def _print_next(dataset: Path, model: Path) -> None:
    """What a user does with a built model: prove it, look at it, release its dataset (their real paths)."""
    import shlex

    d, m = shlex.quote(str(dataset)), shlex.quote(str(model))
    console.print("next:", highlight=False)
    for what, command in (
            ("prove the model on images people labelled (a CSV of path,label or a folder, see `visent benchmarks`):",
             f"visent evaluate {m} --benchmark LABELLED"),
            ("see what was kept, dropped and why, and what the model sees:",
             f"visent report {d} --model {m} --out report.html"),
            ("release the dataset with its card:", f"visent export {d} --out dataset.parquet")):
        _indented(what)
        console.print("    " + command, markup=False, highlight=False, soft_wrap=True)  # one line, to copy


def _indented(text: str, indent: int = 2) -> None:
    """A line of the summary, its wrapped lines indented alike."""
    from rich.padding import Padding
    from rich.text import Text

    console.print(Padding(Text(text), (0, 0, 0, indent), expand=False), highlight=False)


@app.command(cls=_Command)
def predict(
    model: str = typer.Argument(..., help="Model directory, or `default` for the model shipped with visent."),
    paths: List[str] = typer.Argument(..., help="Image files, folders, or @list.txt (one path per line)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write CSV here (path,negative,neutral,positive,label,status,error)."),
    batch_size: int = typer.Option(32, min=1, help="Images per batch."),
    chunk_size: int = typer.Option(2048, min=1, help="Images per chunk, written at a time; with --engine ray, the "
                                                     "images of one actor task (at most 128)."),
    engine: str = ENGINE, ray_address: Optional[str] = RAY_ADDRESS,
) -> None:
    """Predict negative / neutral / positive for images; unreadable ones get a row with the error."""
    from visent.predict import iter_predict, write_csv

    _some_input_exists(model, paths)
    runner = _engine(engine, ray_address)
    counts = {"rows": 0, "errors": 0}
    shown: list[dict[str, Any]] = []  # the first rows, for the table; the CSV streams every row
    failed: list[dict[str, Any]] = []  # the first unreadable row, for the message when nothing was predicted

    def rows() -> Iterator[dict[str, Any]]:
        for row in iter_predict(model, paths, batch_size=batch_size, chunk_size=chunk_size, engine=runner):
            counts["rows"] += 1
            counts["errors"] += row["status"] != "ok"
            if out is None or len(shown) <= 50:
                shown.append(row)
            if row["status"] != "ok" and not failed:
                failed.append(row)
            yield row

    if out is not None:
        _run("predict", write_csv, rows(), out)
        console.print(f"wrote {counts['rows']} rows → {out}")
    else:
        _run("predict", lambda: sum(1 for _ in rows()))
    if out is None or len(shown) <= 50:
        _print_predictions(shown)
    console.print(f"{_images(counts['rows'])}: {counts['rows'] - counts['errors']} predicted, "
                  f"{counts['errors']} unreadable")
    _print_placement(runner)
    _nothing_done("predicted", counts["rows"], counts["errors"], failed[:1])


@app.command(cls=_Command)
def explain(
    model: str = typer.Argument(..., help="Model directory, or `default` for the model shipped with visent."),
    paths: List[str] = typer.Argument(..., help="Image files, folders, or @list.txt (one path per line)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the maps: <image>.<class>.png per class, "
                                                     "<image>.panel.png, and explanations.csv."),
    method: str = typer.Option("auto", "--method", help="cam (class activation maps through the linear head), "
                                                        "gradcam (any backbone) or auto (cam where possible)."),
) -> None:
    """Sentiment maps: where in each image the model sees negative, neutral and positive, as PNG overlays."""
    from visent.explain import METHODS, explain_images

    if method not in METHODS:
        raise UsageError(f"--method: unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    _some_input_exists(model, paths)
    rows = _run("explain", explain_images, model, paths, out, method=method)
    _print_predictions(rows[:50])
    errors = sum(row["status"] != "ok" for row in rows)
    console.print(f"{_images(len(rows))}: {len(rows) - errors} explained, {errors} unreadable; maps → {out}")
    _nothing_done("explained", len(rows), errors, [row for row in rows if row["status"] != "ok"][:1])


def _some_input_exists(model: str, paths: List[str]) -> None:
    """After the model is found: a usage error when none of the paths given exists, as a mistyped folder is not an
    unreadable image. When some exist, the missing ones get their rows (status error, "file not found")."""
    from visent.model import resolve_model_dir

    resolve_model_dir(model)  # the first argument is the first to be wrong
    def exists(path: str) -> bool:
        return Path(path[1:]).is_file() if path.startswith("@") else Path(path).exists()

    missing = [path for path in paths if not exists(path)]
    if paths and len(missing) == len(paths):
        others = {1: "", 2: " (nor does the other path given)"}.get(len(missing),
                                                                    f" (nor do the {len(missing) - 1} other paths given)")
        raise PathNotFound(f"{missing[0]}: no such file or folder{others}")


def _images(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def _nothing_done(done: str, n: int, errors: int, failed: list[dict[str, Any]]) -> None:
    """Exit with an error (status 1) when every one of ``n`` images was unreadable: a run that made nothing did not
    succeed. The message quotes the first unreadable image's reason (its row is in the table and the files)."""
    if n == 0 or errors < n:
        return
    row = failed[0]
    reason = row["error"] if str(row["error"]).startswith(f"{row['path']}: ") else f"{row['path']}: {row['error']}"
    if n > 1:
        reason = f"none of the {n} images could be read (the first: {reason})"
    raise VisentError(f"nothing was {done}: {reason}; give image files (JPEG, PNG, ...), folders of them or "
                      "@list.txt files with one path per line")


def _print_predictions(rows: list[dict[str, Any]]) -> None:
    from visent.core.labels import CLASSES

    table = Table(show_header=True, header_style="bold")
    for column in ("path", *CLASSES, "label"):
        table.add_column(column, justify="left" if column in ("path", "label") else "right")
    for row in rows:
        if row["status"] == "ok":
            table.add_row(row["path"], *(f"{row[c]:.3f}" for c in CLASSES), row["label"])
        else:
            table.add_row(row["path"], "", "", "", f"[red]error: {row['error']}[/]")
    stdout.print(table)


@app.command(cls=_Command)
def evaluate(
    model: str = typer.Argument(..., help="Model directory, or `default`."),
    benchmark: Path = typer.Option(..., "--benchmark", "-b", help="NAME=PATH (see `visent benchmarks`: twitter-i, "
                                                                   "twitter-ii, fi, emotionroi, mvsa, csv, folders), or "
                                                                   "a path whose kind is detected from its layout."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the report as JSON here."),
    folds: Optional[int] = typer.Option(None, "--folds", min=2,
                                        help="Also score the student per fold (the benchmark's own folds when it "
                                             "has them, as Twitter-II does; else stratified k-fold)."),
    finetune: bool = typer.Option(False, "--finetune", help="With --folds: fine-tune a head on the other folds' human "
                                                            "labels, from the student and from ImageNet features."),
    seed: int = SEED,
) -> None:
    """Prove a model on human-labelled images: binary (pos vs neg) accuracy, balanced accuracy, macro-F1, confusion."""
    from visent.evaluate import evaluate as run_evaluate
    from visent.evaluate import print_evaluation

    evaluation = _run("evaluate", run_evaluate, model, benchmark, out=out, folds=folds, finetune=finetune, seed=seed)
    print_evaluation(evaluation, model=model, benchmark=str(benchmark), out=stdout, err=console)
    if out is not None:
        console.print(f"report → {out}")


@app.command(cls=_Command)
def adapt(
    model: str = typer.Argument(..., help="Model directory, or `default`."),
    labels: Path = typer.Option(..., "--labels", "-l", help="CSV of path,label (negative / neutral / positive, or "
                                                            "0/1 with 0 = negative; relative paths from the CSV's "
                                                            "folder; `visent serve`'s page and `visent label suggest` "
                                                            "write one), or a Label Studio export (JSON or JSON_MIN) "
                                                            "of tasks from `visent label export`; local-files images "
                                                            "are found under LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the adapted model."),
    seed: int = SEED,
) -> None:
    """Fit the student's head to human image labels, starting from the student: a few hundred labels move it where
    people disagree with it, the classes they do not show keep the student's weights."""
    from visent.train.adapt import adapt_model

    record = _run("adapt", adapt_model, model, labels, out, seed=seed)
    _print_counts("adapted to human labels", {"labels used": record["labels"], **record["per_class"],
                                              "C": record["C"], "rows left out": record["n_skipped"]})
    cv, before, after = record.get("cross_validation") or {}, record.get("before"), record.get("after")
    if before is not None and after is not None:
        temperature = record["temperature"]
        label = "after (adapted" + (f", T = {temperature['value']:.3g}" if temperature["refit"] else "") + ")"
        console.print(f"what the labels bought, by {escape(cv['how'])}:", soft_wrap=True)
        console.print(f"  {'':<28}{'balanced accuracy':>18}{'ECE':>8}", highlight=False)
        console.print(f"  {'before (the student)':<28}{before['balanced_accuracy']:>18.3f}{before['ece']:>8.3f}",
                      highlight=False)
        console.print(f"  {label:<28}{after['balanced_accuracy']:>18.3f}{after['ece']:>8.3f}", highlight=False)
    elif before is not None:
        console.print(f"no before/after comparison: {escape(cv['how'])}", soft_wrap=True)
    if "temperature" in record:
        console.print(f"temperature {escape(record['temperature']['decision'])}", soft_wrap=True)
    for warning in record.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    console.print(f"model → [bold]{escape(str(out))}[/]")
    for line in record["skipped"][:20]:
        console.print(f"  left out: {escape(line)}")
    if record["n_skipped"] > 20:
        console.print(f"  … and {record['n_skipped'] - 20} more (all in {out}/metrics.json)")


label_app = typer.Typer(cls=_Commands, help="Human labels: which images to label next, and Label Studio.",
                        no_args_is_help=True)
app.add_typer(label_app, name="label")


@label_app.command("suggest", cls=_Command)
def label_suggest(
    model: str = typer.Argument(..., help="Model directory, or `default`."),
    pool: List[str] = typer.Argument(..., help="Unlabelled images: folders, image files, @list.txt files, or a visent "
                                                "dataset directory (its kept images)."),
    n: int = typer.Option(100, "--n", "-n", min=1, help="How many images to suggest."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write: path, an empty label column to fill in "
                                                      "(negative / neutral / positive), then the student's view; "
                                                      "give it to `visent adapt --labels` once filled in."),
    strategy: str = typer.Option("uncertainty", "--strategy", help="uncertainty (the images the student is least "
                                                                    "sure of, spread over clusters and taken in turns "
                                                                    "by predicted class), badge (images it doubts, "
                                                                    "unlike each other: k-means++ over its gradient "
                                                                    "embeddings), entropy, or random (the control)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same suggestions."),
    labelled: List[Path] = typer.Option([], "--labelled", help="Labels already given (CSV of path,label or a Label "
                                                               "Studio export): their images, and copies of them "
                                                               "under other names, are not suggested again. "
                                                               "Repeatable."),
    batch_size: int = typer.Option(32, min=1, help="Images per batch."),
) -> None:
    """Suggest which images to label next: those the student is least sure of, spread over the pool and over the
    classes (measured on MVSA and Twitter-II they buy `visent adapt` about what a random draw does: docs/adapt.md)."""
    from visent.label import suggest, write_csv

    result = _run("label suggest", suggest, model, pool, n, strategy=strategy, seed=seed, labelled=labelled,
                  batch_size=batch_size)
    write_csv(result, out)
    table = Table(title=escape(f"first of {len(result)} suggestions ({strategy})"), show_header=True,
                  header_style="bold")
    for column in ("rank", "image", "predicted", "score", "why"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for row in result.rows[:10]:
        table.add_row(str(row.rank), escape(Path(row.path).name), row.predicted, f"{row.score:.2f}", escape(row.why))
    stdout.print(table)
    counts = result.counts
    _print_counts("pool", {"images": counts["pool"], "suggested": counts["suggested"],
                           "left out: labelled": counts["labelled"],
                           "left out: twice in the pool": counts["duplicates"], "unreadable": counts["unreadable"]})
    for path, reason in result.skipped[:10]:
        console.print(f"  unreadable: {escape(path)}: {escape(reason)}")
    if len(result.skipped) > 10:
        console.print(f"  … and {len(result.skipped) - 10} more")
    console.print(f"to label → [bold]{escape(str(out))}[/] (fill in the label column, then `visent adapt "
                  f"{escape(model)} --labels {escape(str(out))} --out MODEL`)", soft_wrap=True)


@label_app.command("export", cls=_Command)
def label_export(
    model: str = typer.Argument(..., help="Model directory, or `default`."),
    images: List[str] = typer.Argument(..., help="Image files, folders or @list.txt files."),
    out: Path = typer.Option(..., "--out", "-o", help="Label Studio tasks file (JSON) to import; the labelling config "
                                                      "is written beside it as NAME.label_config.xml."),
    url_prefix: Optional[str] = typer.Option(None, "--url-prefix", help="Where the images are served: each image "
                                             "becomes this URL followed by its path under --root."),
    document_root: Optional[Path] = typer.Option(None, "--document-root", help="The folder Label Studio serves local "
                                                 "files from (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT): each image "
                                                 "becomes /data/local-files/?d=PATH."),
    root: Optional[Path] = typer.Option(None, "--root", help="With --url-prefix: the folder the URL paths start from "
                                        "(by default the folder holding all the images)."),
) -> None:
    """Write Label Studio tasks for images, each with the student's prediction as a pre-annotation to confirm or
    correct; label them, export the project as JSON and give it to `visent adapt --labels`."""
    from visent.label import export_tasks

    record = _run("label export", export_tasks, model, images, out, url_prefix=url_prefix,
                  document_root=document_root, root=root)
    _print_counts("tasks for Label Studio", {"tasks": record["tasks"], **record["per_class"],
                                             "images left out": len(record["skipped"])})
    console.print(f"tasks → [bold]{escape(str(record['out']))}[/]   labelling config → "
                  f"[bold]{escape(str(record['config']))}[/]", soft_wrap=True)
    for line in record["skipped"][:20]:
        console.print(f"  left out: {escape(str(line))}")


@app.command(cls=_Command)
def report(
    target: str = typer.Argument(..., help="Dataset directory, or a model directory (its dataset is found through "
                                           "its metrics.json), or `default`."),
    out: Path = typer.Option(..., "--out", "-o", help="HTML file to write: one self-contained page."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="With a dataset: the model whose most confident "
                                                                     "images (and sentiment maps) the page shows."),
    benchmark: Optional[Path] = typer.Option(None, "--benchmark", "-b", help="Evaluate the model now on this CSV of "
                                                                             "path,label or MVSA folder."),
    evaluation: Optional[Path] = typer.Option(None, "--evaluation", help="Reuse the JSON of `visent evaluate --out`."),
    top: int = typer.Option(6, "--top", min=0, help="Images per predicted class in the grid."),
) -> None:
    """An HTML report: cleaning funnel and reasons, teacher confidence, class balance, evaluation, the model's most
    confident images with their sentiment maps."""
    from visent.report import write_report

    path = _run("report", write_report, target, out, model=model, benchmark=benchmark, evaluation=evaluation, top=top)
    console.print(f"report → [bold]{escape(str(path))}[/]")


@app.command(cls=_Command)
def export(
    dataset: Path = typer.Argument(..., help="Dataset directory after `visent clean`."),
    out: Path = typer.Option(..., "--out", "-o", help="File to write, .parquet or .csv; the dataset card goes beside "
                                                      "it (mvsa.parquet → mvsa.parquet.card.md)."),
    split: str = typer.Option("0.8,0.1,0.1", "--split", help="Train,val,test fractions of the kept rows, drawn from "
                                                             "each image's SHA-256."),
    with_text: bool = typer.Option(False, "--with-text/--without-text", help="Add the posts' text (crawled text has "
                                                                             "licence limits: off by default)."),
) -> None:
    """The released form of a dataset: every post (kept or dropped, with why), label, split, and a dataset card."""
    from visent.export import export_dataset

    counts = _run("export", export_dataset, dataset, out, with_text=with_text, split=split)
    _print_counts(f"export → {out}", {k: v for k, v in counts.items() if k not in ("out", "card", "split_per_class")})
    console.print(f"rows → [bold]{escape(counts['out'])}[/]\ncard → [bold]{escape(counts['card'])}[/]")


@app.command(cls=_Command)
def serve(
    model: str = typer.Argument(..., help="Model directory, or `default` for the model shipped with visent."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    max_upload_mb: Optional[float] = typer.Option(None, "--max-upload-mb", min=0.001,
                                                  help="Largest request body in MB, all its images together (default 20)."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1,
                                             help="Largest image in pixels, width x height (default 25000000)."),
    max_files: Optional[int] = typer.Option(None, "--max-files", min=1, help="Most images per request (default 10)."),
    max_connections: Optional[int] = typer.Option(None, "--max-connections", min=1,
                                                  help="Most connections held at once (default 1000, fewer when "
                                                       "`ulimit -n` is low); past it the one waiting longest for its "
                                                       "headers is closed, or a newcomer gets 503."),
    header_timeout: float = typer.Option(10.0, "--header-timeout", min=0.1,
                                         help="Seconds a client has to send a request's headers."),
    max_concurrent: Optional[int] = typer.Option(None, "--max-concurrent", min=1,
                                                 help="/predict and /explain requests at work at once (default: one "
                                                      "per core); twice as many wait, more get 503."),
    label_pool: Optional[str] = typer.Option(None, "--label-pool", help="Images to label on the page's Label tab, "
                                             "in the order `visent label suggest` gives them: a "
                                             "folder, an @list.txt or a visent dataset directory."),
    labels_out: Path = typer.Option(Path("labels.csv"), "--labels-out", help="CSV the labels are saved to as they "
                                    "are given (path,label, for `visent adapt --labels`); images it labels already "
                                    "are not asked again."),
    label_strategy: str = typer.Option("uncertainty", "--label-strategy", help="uncertainty, badge, entropy or "
                                                                                "random (as `visent label suggest "
                                                                                "--strategy`)."),
    label_n: int = typer.Option(100, "--label-n", min=1, help="Images of the pool to have labelled in all, earlier "
                                                             "sessions included."),
    seed: int = typer.Option(0, "--seed", help="Seed of the picks (the same seed gives the same order)."),
) -> None:
    """Serve a model over HTTP: a web page to drop images on, POST /predict, POST /explain, GET /health, /docs."""
    from visent.model import load
    from visent.serve import bind
    from visent.serve import serve as run_serve

    loaded = load(model)
    loaded.check()  # a model that cannot score an image fails here, before its address is announced
    labelling: dict[str, Any] = {}
    if label_pool is not None:
        from visent.label import STRATEGIES

        if label_strategy not in STRATEGIES:  # said before the address is announced, as the other options are
            raise UsageError(f"--label-strategy: unknown strategy {label_strategy!r}; choose one of: "
                             f"{', '.join(sorted(STRATEGIES))}")
        _some_input_exists(model, [label_pool])
        labelling = {"label_pool": label_pool, "labels_file": labels_out, "label_strategy": label_strategy,
                     "label_n": label_n, "seed": seed}
    limits: dict[str, Any] = {"max_pixels": max_pixels, "max_files": max_files, "max_concurrent": max_concurrent,
                              "max_upload_bytes": None if max_upload_mb is None else int(max_upload_mb * 2**20)}
    sock = bind(host, port)  # a port in use fails here, before the address is announced
    shown_host = f"[{host}]" if ":" in host else host
    if not _loopback(host):
        console.print(f"[bold yellow]warning:[/] {escape(host)} is reachable from the network and visent serve has "
                      "no authentication: anyone who reaches it can send images and read predictions; put it "
                      "behind a proxy that authenticates, or listen on 127.0.0.1", soft_wrap=True)
    console.print(f"visent serve: model [bold]{escape(model)}[/] at [bold]http://{shown_host}:{port}/[/] "
                  f"(API docs at /docs); Ctrl+C stops it", soft_wrap=True)
    run_serve(loaded, host=host, port=port, sock=sock, max_connections=max_connections,
              header_timeout=header_timeout, check=False, **{k: v for k, v in limits.items() if v is not None},
              **labelling)


def _loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (localhost, 127.0.0.0/8, ::1)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command(cls=_Command)
def demo() -> None:
    """Predict the sample photos shipped with scikit-image using the model shipped with visent."""
    try:
        import skimage.data
    except ImportError:
        raise VisentError("the demo photos come from scikit-image: pip install 'visent[demo]'") from None
    folder = Path(skimage.data.__file__).parent
    photos = [str(folder / name) for name in DEMO_PHOTOS if (folder / name).exists()]
    from visent.predict import predict as run_predict

    rows = _run("demo", run_predict, "default", photos)
    for row in rows:
        row["path"] = Path(row["path"]).name
    _print_predictions(rows)


@app.command(cls=_Command)
def backbones() -> None:
    """List the image backbones visent knows."""
    from visent.embed import BACKBONES
    from visent.embed.backbones import families

    for name, description in BACKBONES.describe().items():
        default = " (default)" if name == DEFAULT_BACKBONE else ""
        console.print(f"[bold]{name}[/]{default}  {escape(description)}")
    named = families()
    if named:
        console.print(f"A family takes an architecture and its weights: --backbone {escape(named[0])}:<arch> --weights "
                      f"FILE (families: {', '.join(named)}).")
    from visent.signals import SIGNALS

    console.print("Image signals (--signal NAME, fused with the backbone's features):")
    for name, description in SIGNALS.describe().items():
        console.print(f"[bold]{name}[/]  {escape(description)}")


teacher_app = typer.Typer(cls=_Commands, help="Train textual teachers on labelled tweets, and run them on texts.",
                          no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")


@teacher_app.command("train", cls=_Command)
def teacher_train(
    data: List[Path] = typer.Option(..., "--data", help="Folder or file of labelled texts: SemEval *.tsv (id, label, "
                                                        "text) or XLM-T <split>_text.txt + <split>_labels.txt. Repeatable."),
    out: Path = typer.Option(..., "--out", "-o", help="Teacher directory to write (resumes a partial one)."),
    encoder: List[str] = typer.Option(["minilm", "e5-small"], "--encoder",
                                      help="Text encoder of a member, repeatable: minilm (English), e5-small "
                                           "(multilingual), or hf:PATH (a local Hugging Face encoder folder)."),
    exclude: List[str] = typer.Option([], "--exclude", help="Skip files whose name (or path below --data) matches "
                                                            "this glob, e.g. twitter-2016test-A.tsv or 'val_*'. Repeatable."),
    finetune_layers: int = typer.Option(2, "--finetune-layers", min=0,
                                        help="Top encoder layers fine-tuned (0: frozen encoder, logistic head)."),
    epochs: int = typer.Option(3, "--epochs", min=1, help="Fine-tuning epochs (the best on validation is kept)."),
    vader: bool = typer.Option(True, "--vader/--no-vader", help="Stack VADER into the English route."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the validation split and training."),
) -> None:
    """Train a teacher (fine-tuned encoders, calibrated, stacked with VADER) from labelled tweets."""
    import shlex
    import sys

    from visent.teach.recipe import train_teacher

    command = "visent " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    meta = _run("teacher train", train_teacher, data, out, encoders=encoder, exclude=exclude,
                finetune_layers=finetune_layers, epochs=epochs, vader=vader, seed=seed, command=command)
    table = Table(title=f"teacher → {out} (validation split)", header_style="bold")
    for column in ("route / member", "n", "macro-recall", "accuracy", "macro-F1", "ECE"):
        table.add_column(column, justify="left" if column.startswith("route") else "right")
    for key, route in meta["routes"].items():
        rows = [(f"{key}: stacked ({readable(route['weights'])})", route["validation"])]
        rows += [(f"{key}: {name}", values) for name, values in route["validation_members"].items()]
        for label, v in rows:
            table.add_row(escape(label), str(v["n"]), f"{v['macro_recall']:.3f}", f"{v['accuracy']:.3f}",
                          f"{v['macro_f1']:.3f}", f"{v['ece']:.3f}")
    stdout.print(table)
    for member in meta["members"]:
        report = member["report"]
        console.print(f"{member['name']}: ECE {report['val_before_scaling']['ece']:.3f} → {report['val']['ece']:.3f} "
                      f"after temperature scaling (T = {report['temperature']:.3f}), trained in {report['seconds']:.0f} s")


@teacher_app.command("predict", cls=_Command)
def teacher_predict(
    teacher: str = typer.Argument(..., help="Teacher directory, or a name: default (the teacher `visent teach` uses), vader."),
    textfile: Path = typer.Argument(..., help="Text file, one text per line."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="CSV to write (default: standard output)."),
) -> None:
    """Negative / neutral / positive probabilities for each line of a text file, as CSV in input order."""
    from visent.teach.score import predict_lines

    rows = _run("teacher predict", predict_lines, teacher, textfile, out)
    if out is None:
        import sys

        sys.stdout.write(rows)
    else:
        console.print(f"wrote {out}")


@app.command(cls=_Command)
def teachers() -> None:
    """List the textual teachers visent knows."""
    from visent.teach import TEACHERS

    for name, description in TEACHERS.describe().items():
        console.print(f"[bold]{name}[/]  {escape(description)}")
    console.print("Any directory made by `visent teacher train`: --teacher PATH.")


@app.command(cls=_Command)
def benchmarks() -> None:
    """List the benchmarks `visent evaluate --benchmark NAME=PATH` reads."""
    from visent.evaluate import BENCHMARKS, published_for

    listing = Table.grid(padding=(0, 2))  # the name in its own column, the description wrapped beside it
    listing.add_column(no_wrap=True)
    listing.add_column()
    for name, description in BENCHMARKS.describe().items():
        published = len(published_for(name))
        listing.add_row(f"[bold]{name}[/]", escape(description)
                        + (f" · {published} published figure{'s' if published > 1 else ''} shown beside visent's"
                           if published else ""))
    console.print(listing)
    console.print("A bare path is read by the layout it has: ground_truth/ as twitter-i, groundTruthLabel.txt as "
                  "twitter-ii, emotion folders as fi or emotionroi, class folders as folders, else mvsa; a file as a "
                  "CSV of path,label (fi or emotionroi when its labels are emotions).")


@app.command(cls=_Command)
def cache(
    clear: bool = typer.Option(False, "--clear", help="Delete visent's cached files (features, ONNX exports); they "
                                                      "are rebuilt when needed."),
    yes: bool = typer.Option(False, "--yes", "-y", help="With --clear: delete without asking."),
) -> None:
    """Where visent's cache is ($VISENT_CACHE, else ~/.cache/visent) and its size per kind; --clear deletes it."""
    from visent.core.cache import cache_root, cache_usage, clear_cache

    root = cache_root()
    folders = cache_usage(root)
    table = Table(title=f"cache: {escape(str(root))}", show_header=True, header_style="bold")
    for column in ("folder", "size", "files", "holds"):
        table.add_column(column, justify="right" if column in ("size", "files") else "left")
    for folder in folders:
        table.add_row(escape(folder.name), _size(folder.size), f"{folder.files:,}",
                      escape(folder.what) if folder.visent else "not visent's: --clear leaves it")
    table.add_row("[bold]all[/]", f"[bold]{_size(sum(f.size for f in folders))}[/]",
                  f"[bold]{sum(f.files for f in folders):,}[/]", "")
    stdout.print(table)
    if not clear:
        return
    ours = [folder for folder in folders if folder.visent and folder.files]
    if not ours:
        console.print("nothing to clear")
        return
    if not yes:
        typer.confirm(f"Delete {_size(sum(f.size for f in ours))} of cached files under {root} "
                      f"({', '.join(f.name for f in ours)})?", abort=True)
    freed = clear_cache(root)
    console.print(f"cache cleared: {_size(freed)} freed under [bold]{escape(str(root))}[/]")


def _size(n: int) -> str:
    """Bytes for people: 0 B, 812 B, 3.8 MB, 1.2 GB."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


if __name__ == "__main__":
    app()
