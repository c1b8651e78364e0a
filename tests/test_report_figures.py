"""The report's figures as one list (bench.report.figures.FIGURES), each drawn from what the run
stored, under its scoring protocol and with the outside colorizers' rows; and the report's
tables as LaTeX (table.tex). On a tiny real run scored under `--protocol ddcolor`."""
from __future__ import annotations

import io
import re
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.cli import main
from bench.escape import latex
from bench.report import figures
from bench.report.build import build_report
from bench.report.figures import FIGURES, LeftOut, ReportFigure, colorfulness_values, plotted_means, register_figure
from bench.report.figures import ReportSettings
from bench.report.summary import summarize
from bench.rundir.read import load_run
from bench.rundir.write import atomic_write_bytes
from conftest import offline_env, write_photo_folder
from test_score import make_predictions

TINY = ["--size", "32", "--width", "8", "--epochs", "1", "--batch-size", "4", "-q"]
SETTINGS = ReportSettings(samples=2, display_size=48)
SPECIAL = "a_b&c%d$e#f{g}h~i^j\\k"  # every character LaTeX treats specially


@pytest.fixture(scope="module")
def ddcolor_run(tmp_path_factory):
    """l1 and mse, two seeds, scored under the ddcolor protocol (absolute cf formula), and an
    outside colorizer (`half`: the val photos at half saturation) scored into the run."""
    root = tmp_path_factory.mktemp("ddcolor")
    photos = write_photo_folder(root)
    run = root / "run"
    with offline_env(root):
        res = CliRunner().invoke(main, ["run", "--data", str(photos), "--losses", "l1,mse", "--seeds", "0,1",
                                        "--protocol", "ddcolor", "--out", str(run), *TINY])
        assert res.exit_code == 0, res.output
        preds = make_predictions(photos / "val", root / "preds", names=("half",))
        res = CliRunner().invoke(main, ["score", "--run", str(run), f"half={preds['half']}", "-q"])
        assert res.exit_code == 0, res.output
    return run


@pytest.fixture
def restore_figures():
    """A test that registers a figure leaves the list as it found it."""
    saved = list(FIGURES)
    yield
    FIGURES[:] = saved


@pytest.mark.slow  # a real training
def test_the_colourfulness_figure_plots_the_tables_numbers_under_the_runs_protocol(ddcolor_run):
    """It reran the generators with the default formula on its own photo crops: under
    `--protocol ddcolor` its means were not the table's, and outside colorizers were missing.
    Now it plots the stored per-image scores: each row's mean is the table's number."""
    run = load_run(ddcolor_run)
    assert run.config["protocol"]["scoring"]["name"] == "ddcolor"
    summary = summarize([run])
    table = summary[summary.metric == "cf"].set_index("row")["mean"]
    values = colorfulness_values([run])
    means = plotted_means(values)
    assert list(means) == ["l1", "mse", "half", "ground-truth"]  # gray (no colour) left out, the outside row in
    for row, mean in means.items():
        assert mean == pytest.approx(table[row], rel=1e-6), row
    assert (values.row == "l1").sum() == 2 * 6  # both seeds' photos, pooled: their mean is the mean of the seeds'


@pytest.mark.slow  # a real training
def test_only_the_sample_grid_reruns_generators(ddcolor_run, tmp_path, monkeypatch):
    loaded = []
    real = figures.load_generator
    monkeypatch.setattr(figures, "load_generator", lambda path, device="cpu": loaded.append(path) or real(path, device))
    report = build_report([ddcolor_run], tmp_path / "rep", SETTINGS)
    assert set(report.figures) == {f.key for f in FIGURES}
    assert len(loaded) == 2  # one seed of each trained combination, for its column of the sample grid
    md = report.path.read_text()
    caption = md.split("![colorfulness](fig_colorfulness.png)", 1)[1].split("\n\n", 2)[1]
    assert "outside colorizer" in caption and "the table's value" in caption
    assert "are not in the sample grid" in md and "not in the sample grid or the colourfulness figure" not in md


@pytest.mark.slow  # a real training
def test_a_report_figure_is_one_entry(ddcolor_run, tmp_path, restore_figures):
    def draw(data, path):
        buf = io.BytesIO()
        Image.new("RGB", (240, 240), (30, 120, 200)).save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue())
        return [f"toy figure: {len(data.order)} rows"]

    register_figure(ReportFigure("toy", "fig_toy.png", lambda data: f"A toy figure of {len(data.runs)} run.", draw),
                    before="samples")
    out = tmp_path / "rep"
    report = build_report([ddcolor_run], out, SETTINGS)
    md = report.path.read_text()
    assert report.figures["toy"] == out / "fig_toy.png" and (out / "fig_toy.png").is_file()
    assert "![toy](fig_toy.png)\n\n*A toy figure of 1 run.*" in md
    assert md.index("fig_colorfulness.png") < md.index("fig_toy.png") < md.index("fig_samples.png")
    assert "- toy figure: 4 rows" in md  # gray, l1, mse, half
    # a figure left out this time: its file from the last report goes, the reason is a caveat
    FIGURES[:] = [f for f in FIGURES if f.key != "toy"]

    def left_out(data, path):
        raise LeftOut("the toy figure is left out: nothing to draw")

    register_figure(ReportFigure("toy", "fig_toy.png", "A toy figure.", left_out))
    report = build_report([ddcolor_run], out, SETTINGS)
    assert "toy" not in report.figures and not (out / "fig_toy.png").exists()
    assert "- the toy figure is left out: nothing to draw" in report.path.read_text()
    with pytest.raises(ValueError, match="already registered"):
        register_figure(ReportFigure("toy", "fig_other.png", "", left_out))
    with pytest.raises(ValueError, match="fig_<name>.png"):
        register_figure(ReportFigure("other", "other.png", "", left_out))


# ---------------------------------------------------------------- LaTeX


def test_latex_escapes_every_special_character():
    assert latex(SPECIAL) == (r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k")
    assert latex("100*l1+gan · run") == r"100*l1+gan \textperiodcentered{} run"
    assert latex("a--b\nc<d>|`") == r"a-{}-b c\textless{}d\textgreater{}\textbar{}\textasciigrave{}"


def _tex_rows(tex: str) -> list[tuple[str, list[list[str]]]]:
    """Each tabular of table.tex: its column spec and its rows (header first) split into cells."""
    out = []
    for spec, body in re.findall(r"\\begin\{tabular\}\{([lr]+)\}\n(.*?)\\end\{tabular\}", tex, flags=re.S):
        lines = [x.strip() for x in body.splitlines() if x.strip()]
        assert lines[0] == r"\toprule" and lines[2] == r"\midrule" and lines[-1] == r"\bottomrule", lines
        rows = [x for x in lines if not x.endswith("rule")]
        assert all(x.endswith(r" \\") for x in rows), rows
        out.append((spec, [re.split(r"(?<!\\)&", x[: -len(r" \\")]) for x in rows]))
    return out


def _as_markdown(tex_cell: str) -> str:
    """A score cell of table.tex written as report.md writes it."""
    text = tex_cell.strip().replace(r" $\pm$ ", " ± ").replace("$-$", "-").replace(r"$\infty$", "∞")
    text = re.sub(r"\\textbf\{(.*)\}", r"**\1**", text)
    return "—" if text == "---" else text


@pytest.mark.slow  # a real training
def test_table_tex_holds_the_reports_tables_with_every_name_escaped(ddcolor_run, tmp_path):
    """Two runs, one in a folder named with every LaTeX special character: each table keeps
    its columns, braces balance, the names are escaped, and every number is report.md's."""
    odd = shutil.copytree(ddcolor_run, tmp_path / SPECIAL, ignore=shutil.ignore_patterns("report.md", "summary.csv"))
    plain = shutil.copytree(ddcolor_run, tmp_path / "plain", ignore=shutil.ignore_patterns("report.md", "summary.csv"))
    report = build_report([odd, plain], tmp_path / "both", SETTINGS)
    tex = (tmp_path / "both" / "table.tex").read_text()
    md = report.path.read_text()
    assert "[table.tex](table.tex)" in md
    unescaped = re.sub(r"\\[{}&%$#_]", "", tex)
    assert unescaped.count("{") == unescaped.count("}")
    body = re.sub(r"(?m)^%.*$", "", tex)  # comments aside, no special character is left bare
    assert SPECIAL not in body and latex(SPECIAL) in body
    assert not re.search(r"(?<!\\)[#%_~^]", re.sub(r"\\text(asciitilde|asciicircum)\{\}", "", body))
    assert [label for label in re.findall(r"\\label\{([^}]+)\}", tex)] == \
        ["tab:colorbench-scores", "tab:colorbench-intervals", "tab:colorbench-cost"]
    tables = _tex_rows(tex)
    for spec, rows in tables:
        assert all(len(r) == len(spec) for r in rows), (spec, rows)  # every row as many cells as columns
    # the main table: report.md's rows and numbers, cell for cell
    section = md.split("## Results", 1)[1].split("\n## ", 1)[0]
    md_rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in section.splitlines() if line.startswith("| ")]
    spec, rows = tables[0]
    assert len(rows) == len(md_rows) - 1 and rows[0][0].strip() == "Combination"  # md: a separator row
    for tex_row, md_row in zip(rows[1:], md_rows[2:]):
        assert [_as_markdown(c) for c in tex_row[1:]] == md_row[1:]
        label = md_row[0].split("`")[1] if "`" in md_row[0] else md_row[0]
        assert tex_row[0].strip().startswith(latex(label.strip()))
    assert any(latex(f"l1 · {SPECIAL}") in r[0] for r in rows)
    summary = pd.read_csv(tmp_path / "both" / "summary.csv")
    assert len(rows) - 1 == summary["row"].nunique()
