"""Report headings, summary lines, figures and the HTML page, on tables built by hand (no training):
numbers small enough to check by hand."""

import html
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from scipy import stats as sps

from prunebench import report, stats
from prunebench.report import Cell, Table

SVG = "{http://www.w3.org/2000/svg}"


def cell(row, scores, macs=None, ta=None, **kw):
    """A complete cell; `macs`: effective MACs per seed (or one number for every seed)."""
    achieved = macs if isinstance(macs, dict) else ({s: macs for s in scores} if macs is not None else {})
    mean_macs = round(np.mean(list(achieved.values()))) if achieved else None
    return Cell(row=row, scores=scores, runs={s: f"{row[:3]}{s}".ljust(12, "0") for s in scores},
                summary=stats.summarise(list(scores.values())), ta_scores=ta or {}, achieved=achieved,
                macs=kw.pop("dense_macs", mean_macs), effective_macs=mean_macs, **kw)


def table(target, cells, setup="S2", dense_macs=2_450_000, dense_scores=None):
    dense = cell("dense", dense_scores or {0: 93.0, 1: 93.5, 2: 94.0}, dense_macs)
    ranked = sorted(cells, key=lambda c: -c.summary.mean)
    return Table("suite", setup, target, sorted(dense.scores), dense, ranked, [], report._all_pairs(ranked))


def test_targets_sort_as_numbers_ratios_then_speedups_then_configs():
    found = sorted(["config A", "2x", "0.7", "10x", "0.3", "1.5x", "0.05"], key=report.target_order)
    assert found == ["0.05", "0.3", "0.7", "1.5x", "2x", "10x", "config A"]  # as strings: '10x' < '2x'
    assert report.parse_target("2x") == ("speedup", 2.0) and report.parse_target("config B") == ("config", "B")
    assert [report.target_label(t) for t in ("0.5", "2x", "config A")] == ["ratio 0.5", "2x speedup", "config A"]


def test_the_heading_spans_the_least_and_most_macs_of_the_rows():
    t = table("2x", [cell("l1norm", {0: 90.0, 1: 91.0, 2: 92.0}, {0: 1_210_000, 1: 1_230_000, 2: 1_240_000}),
                     cell("taylor", {0: 89.0, 1: 90.0, 2: 91.0}, {0: 1_250_000, 1: 1_220_000, 2: 1_215_000})])
    assert report.macs_range(t) == (1_210_000, 1_250_000)
    # 2.45M / 1.25M = 1.96, 2.45M / 1.21M = 2.0248
    assert report.target_heading(t) == "target 2x speedup — achieved MACs 1.21M–1.25M (1.96x–2.02x)"
    one = table("0.5", [cell("l1norm", {0: 90.0, 1: 91.0, 2: 92.0}, 1_225_000)])
    assert report.target_heading(one) == "target ratio 0.5 — achieved MACs 1.23M (2.00x)"
    close = table("2x", [cell("l1norm", {0: 90.0, 1: 91.0}, {0: 1_221_000, 1: 1_223_000})])
    # 1.22M both to three digits; 2.45M / 1.223M = 2.00327, 2.45M / 1.221M = 2.00655
    assert report.target_heading(close) == "target 2x speedup — achieved MACs 1.221M–1.223M (2.00x–2.01x)"
    assert [report._si(v) for v in (999_999, 1_000, 999, 0)] == ["1M", "1k", "999", "0"]
    assert report._apart(2.0031, 2.0039, lambda v, d: f"{v:.{d - 1}f}x") == "2.003x–2.004x"  # 2.00x both


def test_cost_columns_show_pipeline_epochs_flops_and_the_budget_kept():
    c = cell("l1norm", {0: 90.0, 1: 91.0}, 1_000_000, total_epochs={0: 9, 1: 9},
             total_train_flops={0: 990_000_000, 1: 1_000_000_000}, budget_kind="flops",
             budget={0: 1e9, 1: 1e9}, knob={0: 0.41, 1: 0.43})
    t = Table("suite", "SX-B", "2x", [0, 1], None, [c], [], [])
    (row,) = report.table_rows(t)
    got = dict(zip(report.headers(t), row))
    assert got["epochs"] == "9" and got["train FLOPs"] == "990M–1G"
    assert got["budget"] == "1G FLOPs (used ≤ 100.0%)"
    assert got["speedup"] == "- (ratio 0.41–0.43)"  # no dense model here: no measured speedup
    epochs = cell("l1norm", {0: 90.0, 1: 91.0}, 10, total_epochs={0: 9, 1: 10}, budget_kind="epochs",
                  budget={0: 10.0, 1: 10.0})
    assert report.budget_text(epochs) == "10 epochs (used ≤ 100.0%)"
    plain = Table("suite", "S2", "0.5", [0, 1], None, [cell("l1norm", {0: 90.0, 1: 91.0}, 10)], [], [])
    assert "budget" not in report.headers(plain) and len(report.table_rows(plain)[0]) == len(report.headers(plain))


SAME = {0: 80.0, 1: 81.5, 2: 82.0}


@pytest.mark.parametrize("best, second, expected", [
    # per-seed differences 10, 9.5, 10: paired t = 59, p = 0.0003 (one pair: BH leaves it)
    ({0: 90.0, 1: 91.0, 2: 92.0}, SAME, "lead over B (+9.83) significant (p < 0.001, BH)"),
    ({0: 90.0, 1: 85.0, 2: 95.0}, {0: 89.0, 1: 88.0, 2: 91.0}, "lead over B (+0.67) not significant (p = 0.774, BH)"),
    ({0: 90.0, 1: 91.0}, {0: 80.0, 1: 81.5}, "lead over B (+9.75) not tested (fewer than 3 seeds)"),
])
def test_summary_line_names_the_best_row_and_whether_its_lead_is_significant(best, second, expected):
    t = table("0.5", [cell("B", second), cell("A", best)])
    ((a, b, comp, p),) = t.pairs
    assert (a, b) == ("A", "B")  # ranked: the best row first
    if comp.test:
        assert p == pytest.approx(sps.ttest_rel(list(best.values()), list(second.values())).pvalue)
    line = report.lead(t)
    assert line.startswith(f"suite under S2, ratio 0.5: best A ({np.mean(list(best.values())):.2f}%, n = {len(best)})")
    assert line.endswith(expected)


def test_significance_is_the_bh_adjusted_p_below_0_05():
    a, b = cell("A", {0: 90.0, 1: 91.0, 2: 92.0}), cell("B", SAME)
    raw = stats.compare(a.scores, b.scores)  # p = 0.0003 before adjustment
    for adjusted, word in ((0.05, "not significant"), (0.0499, "significant")):
        t = Table("suite", "S2", "0.5", [0, 1, 2], None, [a, b], [], [("A", "B", raw, adjusted)])
        assert report.lead(t).endswith(f"lead over B (+9.83) {word} (p = {adjusted:.3f}, BH)")
    assert report.lead(Table("suite", "S2", "0.5", [0], None, [a], [], [])).endswith("the only complete row")


def errorbar_paths(svg_file):
    """{svg group id: [(x0, y0, x1, y1) of each bar]} of the error bars a figure saved."""
    root = ET.parse(svg_file).getroot()
    found = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("id", "").startswith("errorbars-"):
            found[g.get("id")] = [tuple(map(float, re.findall(r"-?[\d.]+", p.get("d")))) for p in g.iter(f"{SVG}path")]
    return found


def three_targets():
    """l1norm at ratios 0.3 and 0.5 (mean 2 and 5, hand-checkable CIs), random at 0.5, a scratch row."""
    return [table("0.5", [cell("l1norm", {0: 4.0, 1: 5.0, 2: 6.0}, 1_000_000, ta={0: 1.0, 1: 2.0, 2: 3.0}),
                          cell("random", {0: 3.0, 1: 3.0, 2: 3.0}, 1_100_000, ta={0: 2.0, 1: 2.0, 2: 2.0}),
                          cell("Scratch-B of l1norm", {0: 1.0, 1: 1.5, 2: 2.0}, 1_000_000, ta={0: 0, 1: 0, 2: 0})]),
            table("0.3", [cell("l1norm", {0: 1.0, 1: 2.0, 2: 3.0}, 1_700_000, ta={0: 4.0, 1: 5.0, 2: 6.0}),
                          cell("random", {0: 6.0, 1: 7.0, 2: 8.0}, 1_800_000, ta={0: 5.0, 1: 6.0, 2: 7.0})])]


def test_pareto_points_are_means_with_t_intervals_sorted_by_macs(tmp_path):
    series = report.pareto_series(three_targets())
    half = sps.t.ppf(0.975, 2) / np.sqrt(3)  # std 1 over three seeds
    assert [(p.x, p.y, p.target) for p in series["l1norm"]] == [(1e6, 5.0, "0.5"), (1.7e6, 2.0, "0.3")]
    assert series["l1norm"][0].ci == pytest.approx((5 - half, 5 + half))
    assert series["random"][0].ci == (3.0, 3.0)  # no spread: a zero-length bar
    plot = report.plot_pareto(three_targets(), tmp_path / "p")
    assert plot.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.svg.name == "p.svg"
    bars = errorbar_paths(plot.svg)
    assert {k: len(v) for k, v in bars.items()} == {"errorbars-l1norm-y": 2, "errorbars-random-y": 2,
                                                     "errorbars-Scratch-B-of-l1norm-y": 1}
    # in SVG coordinates (y grows downwards): l1norm's bar at 0.5 is as long as 2 * half in data units
    (x0, y0, x1, y1), _ = bars["errorbars-l1norm-y"]
    ax = report.pareto_figure(three_targets()).axes[0]
    assert x0 == x1 and abs(y0 - y1) > 0
    low, high = ax.get_ylim()
    assert low < 2 - half and high > 7 + half  # every bar inside the axes
    assert ax.get_xscale() == "log" and any(line.get_linestyle() == ":" for line in ax.get_lines())  # dense


def test_accuracy_against_target_pads_a_lone_ratio_and_splits_kinds_into_panels(tmp_path):
    lone = report.target_figure([three_targets()[0]])
    (ax,) = lone.axes
    low, high = ax.get_xlim()
    assert low <= 0.42 and high >= 0.58  # not 0.48-0.52 around one ratio
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5"]
    mixed = three_targets() + [table("2x", [cell("l1norm", {0: 1.0, 1: 2.0, 2: 3.0}, 1_200_000)]),
                               table("config A", [cell("l1norm", {0: 1.0, 1: 2.0, 2: 3.0}, 1_300_000)])]
    assert list(report.target_series(mixed)) == ["ratio", "speedup", "config"]
    fig = report.target_figure(mixed)
    assert [a.get_xlabel() for a in fig.axes] == [report.AXES[k] for k in ("ratio", "speedup", "config")]
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["2x"]
    assert [t.get_text() for t in fig.axes[2].get_xticklabels()] == ["A"]
    plot = report.plot_accuracy_vs_target(mixed, tmp_path / "t")
    counts = {k: len(v) for k, v in errorbar_paths(plot.svg).items()}
    assert counts["errorbars-ratio-l1norm-y"] == 2 and counts["errorbars-speedup-l1norm-y"] == 1
    assert counts["errorbars-config-l1norm-y"] == 1 and counts["errorbars-ratio-random-y"] == 2


def test_ta_figure_prints_the_rank_correlation_scipy_finds(tmp_path):
    tables = three_targets()
    points = report.ta_points(tables)
    assert {(p.row, p.target) for p in points} == {("l1norm", "0.5"), ("random", "0.5"), ("l1norm", "0.3"),
                                                   ("random", "0.3")}  # no scratch, no dense
    ta = [p.ta.mean for p in points]
    acc = [p.acc.mean for p in points]
    assert sorted(zip(ta, acc)) == [(2.0, 3.0), (2.0, 5.0), (5.0, 2.0), (6.0, 7.0)]
    r = report.rank_correlation(points)
    assert (r.rho, r.rho_p) == pytest.approx(tuple(sps.spearmanr(ta, acc)))
    assert (r.tau, r.tau_p) == pytest.approx(tuple(sps.kendalltau(ta, acc)))
    text = report.correlation_text(points)
    assert text == (f"Spearman ρ = {r.rho:.2f} (p = {r.rho_p:.3f}), Kendall τ = {r.tau:.2f} "
                    f"(p = {r.tau_p:.3f}); n = 4 rows × targets")
    plot = report.plot_ta_vs_final(tables, tmp_path / "ta")
    assert text.replace("<", "&lt;") in plot.svg.read_text()  # printed on the figure, as text
    bars = errorbar_paths(plot.svg)
    assert sorted(bars) == sorted(f"errorbars-{i}-{axis}" for i in range(4) for axis in "xy")
    assert all(len(v) == 1 for v in bars.values())
    assert report.correlation_text(points[:2]) == "2 points: too few for a rank correlation"


def test_ta_labels_stay_inside_the_figure(tmp_path):
    """Rows are told apart by a legend beside the axes; no text of the figure leaves it."""
    long = [table("0.5", [cell(f"method number {i} with a long label(retrain_lr='0:0.2,1:0.02')",
                               {0: 1.0 + i, 1: 2.0 + i, 2: 3.0 + i}, 10**6, ta={0: i, 1: i + 1.0, 2: i + 2.0})
                          for i in range(5)])]
    fig = report.ta_figure(long)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    texts = [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
    assert any("Spearman" in t.get_text() for t in texts) and any("method number 4" in t.get_text() for t in texts)
    drawn = fig.get_tightbbox(canvas.get_renderer())  # in inches: every drawn artist, legend and titles too
    width, height = fig.get_size_inches()
    assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01 and drawn.x1 <= width + 0.01 and drawn.y1 <= height + 0.01


def test_learning_curve_bands_take_each_runs_last_phase():
    rows = []
    for run, accs in (("r0", [10.0, 20.0]), ("r1", [30.0, 60.0])):
        rows.append({"run_id": run, "step": 0, "phase": "prune", "epoch": 0, "lr": 0.1, "train_acc": 99.0,
                     "test_acc": 99.0})
        rows += [{"run_id": run, "step": 1 + e, "phase": "retrain", "epoch": e, "lr": [0.01, 0.001][e],
                  "train_acc": a + 1, "test_acc": a} for e, a in enumerate(accs)]
    band = report.curve_bands(pd.DataFrame(rows))
    assert list(band.index) == [1, 2]
    assert list(band["test_mean"]) == [20.0, 40.0] and list(band["test_min"]) == [10.0, 20.0]
    assert list(band["test_max"]) == [30.0, 60.0] and list(band["train_mean"]) == [21.0, 41.0]
    assert list(band["lr"]) == [0.01, 0.001] and list(band["n"]) == [2, 2]


def test_html_page_opens_with_a_summary_and_contents_whose_links_resolve(tmp_path):
    tables = three_targets() + [table("2x", [cell("l1norm", {0: 1.0, 1: 2.0, 2: 3.0}, 1_200_000)], setup="SX-B")]
    tables.sort(key=lambda t: (t.setup, report.target_order(t.target)))
    figures = {"suite_S2": [report.plot_pareto(tables[:2], tmp_path / "pareto")]}
    page = report.html_page(tables, {}, figures)
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page) and "http://" not in page and "https://" not in page
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    links = re.findall(r'href="#([^"]+)"', page)
    assert set(links) <= set(ids) and {t.slug for t in tables} <= set(links) and "figures-suite_S2" in links
    start = page.index('id="summary"')
    assert start < page.index('id="contents"') < page.index('id="page-suite_S2"')
    summary = page[start:page.index('id="contents"')]
    assert "Suite: suite. Setups: S2, SX-B. 3 tables" in summary
    for t in tables:
        assert html.escape(report.lead(t)) in summary
    assert page.count("data:image/png;base64,") == 1
