"""Names crafted in a hostile ONNX file are harmless in every output (issue case 16).

One small model carries, in its graph name, node and layer names, tensor names, a custom op's
type and domain, its producer and its metadata, each string below: terminal escape sequences,
spreadsheet formulas, markdown/HTML, bidi overrides, NUL, and a name of 1 MB. Every output of
`archkit analyse` and `archkit connectivity` is checked for what must never reach it raw."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import helper, numpy_helper

from archkit.cli import main
from archkit.render import escape as esc
from tests import builders

# --- the hostile strings ---------------------------------------------------------------------

CLEAR = "\x1b[2J\x1b[Hcleared"
OSC8 = "\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07"
FORMULA = '=HYPERLINK("http://x","y")'
DDE = "-2+3+cmd|' /C calc'!A0"
AT = "@SUM(1+1)"
PLUS = "+1+1"
WIDE = "\uff1d1+1"  # full-width =
PIPES = "a|b||c\\|d\\"
BREAKS = "line1\nline2\r\nline3\u2028line4"
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
BIDI = "\u202aa\u202bb\u202cc\u202dd\u202egnp.exe\u2066i\u2067j\u2068k\u2069"
NUL = "nul\x00byte\x7f\x9b"
TICKS = "tick`code``tick"
LINK = "[x](javascript:alert(1))"
MATH = "$\\frac{a}{b}$ $x^"
HUGE = "H" * (1 << 20)
HUGE_OUT = "O" * (1 << 20) + "\x1b[2J"

# no slash in layer names: they are scope components of node names
LAYERS = [CLEAR + "conv", OSC8, AT + FORMULA.replace("/", ""), PIPES + BREAKS, IMG, BIDI, NUL + TICKS, HUGE]
GRAPH_NAME = SCRIPT + CLEAR + BIDI + MATH
INPUT = OSC8 + "|in"
CUSTOM_OP, CUSTOM_DOMAIN = "Evil\x1b[31m|" + IMG, "evil.domain\u202e" + LINK

pytestmark = [pytest.mark.filterwarnings("ignore:Tight layout not applied:UserWarning"),  # 200-character labels
              pytest.mark.filterwarnings("ignore:Glyph .* missing from font:UserWarning")]  # full-width =

RAW = ["\x1b", "\x07", "\r", "\x00", "\x7f", "\x9b", "\u2028"] + [chr(c) for c in range(0x202A, 0x202F)] \
    + [chr(c) for c in range(0x2066, 0x206A)]
NUMBER = re.compile(r"[+-]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?%?")
MAX_LINE = 5_000


def hostile_model(*, metadata: bool = True) -> onnx.ModelProto:
    """input → Conv → Relu → Conv → Add(skip) → Conv → Concat → custom op → Relu → output, every
    name hostile; with `metadata`, the Keras layer table archkit's exports carry, also hostile."""
    rng = np.random.default_rng(0)
    t = [f"t{i}{s}" for i, s in enumerate([SCRIPT, FORMULA, DDE, PIPES, BREAKS, AT, PLUS])]
    weights = [DDE + "w", WIDE + "w", TICKS + "w"]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), weights[0]),
             numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), weights[1]),
             numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), weights[2])]
    L = [f"model/{l}" for l in LAYERS]
    nodes = [
        helper.make_node("Conv", [INPUT, weights[0]], [t[0]], name=f"{L[0]}/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [t[0]], [t[1]], name=f"{L[1]}/Relu"),
        helper.make_node("Conv", [t[1], weights[1]], [t[2]], name=f"{L[2]}/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Add", [t[2], t[0]], [t[3]], name=f"{L[3]}/Add"),
        helper.make_node("Conv", [t[3], weights[2]], [t[4]], name=f"{L[4]}/Conv"),
        helper.make_node("Concat", [t[3], t[4]], [t[5]], name=f"{L[5]}/Concat", axis=1),
        helper.make_node(CUSTOM_OP, [t[5]], [t[6]], name=f"{WIDE}{L[6]}/Custom", domain=CUSTOM_DOMAIN),
        helper.make_node("Relu", [t[6]], [HUGE_OUT], name=f"{L[7]}/Relu"),
    ]
    model = builders.model(nodes, {INPUT: [FORMULA + BIDI, 3, 8, 8]}, [HUGE_OUT], inits, name=GRAPH_NAME,
                           opsets=[helper.make_opsetid(CUSTOM_DOMAIN, 1)], producer_name=CLEAR + SCRIPT,
                           producer_version=BIDI)
    if metadata:
        layers = [{"name": l, "class": c, "output_shape": [None, s, 8, 8], "block": b,
                   "trainable": 3, "non_trainable": 1}
                  for l, c, s, b in zip(LAYERS, [IMG, "Conv2D", TICKS, "Add", "Conv2D", LINK, FORMULA, "ReLU"],
                                        [4, BIDI, 4, 4, 4, 8, 8, 8],
                                        [LINK, LINK, SCRIPT, PIPES, IMG, BIDI, HUGE, CLEAR])]
        meta = {"archkit.layers": json.dumps(layers), "archkit.keras_params": json.dumps(
                    {"total": 32, "trainable": 24, "non_trainable": 8}),
                "archkit.config": json.dumps({FORMULA: SCRIPT, "ticks": TICKS, "newline": BREAKS})}
        helper.set_model_props(model, meta)
    return model


@pytest.fixture(scope="module", params=[True, False], ids=["metadata", "no-metadata"])
def model_file(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "hostile.onnx"
    path.write_bytes(hostile_model(metadata=request.param).SerializeToString())
    return path


# --- the checks ------------------------------------------------------------------------------

def assert_inert(text: str, where: str, *, json_text: bool = False) -> None:
    for ch in RAW:
        assert ch not in text, f"{where}: raw {ch!r}"
    if not json_text:
        long = [len(l) for l in text.split("\n") if len(l) > MAX_LINE]
        assert not long, f"{where}: a line of {long[0]:,} characters"


def assert_markdown_safe(text: str, where: str) -> None:
    assert_inert(text, where)
    active = re.sub(r"\\.", "", text, flags=re.DOTALL).lower()  # what markdown reads as markup: escaped pairs gone
    assert "<script" not in active and "<img" not in active, where
    assert "](javascript:" not in active, where
    table: list[str] = []
    for line in text.split("\n") + [""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            counts = {_cells(row) for row in table}
            assert len(counts) == 1, f"{where}: table rows with {sorted(counts)} cells: {table[0][:200]}"
            table = []


def _cells(row: str) -> int:
    """Cells of a GFM table row: `|` not escaped by a backslash (which itself may be escaped)."""
    n, i = 0, 0
    while i < len(row):
        if row[i] == "\\":
            i += 2
            continue
        n += row[i] == "|"
        i += 1
    return n - 1


def assert_csv_safe(text: str, where: str) -> None:
    assert_inert(text, where)
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\uff1d", "\uff0b", "\uff0d", "\uff20"):
                assert NUMBER.fullmatch(cell), f"{where}: formula-like cell {cell[:80]!r}"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert_inert(err, f"stderr of {argv[:1]}")
    return code, out, err


# --- archkit analyse -------------------------------------------------------------------------

def test_analyse_markdown(capsys, model_file):
    for by in ("layer", "op", "block", "type"):
        code, out, _ = run(capsys, "analyse", model_file, "--by", by)
        assert code == 0
        assert_markdown_safe(out, f"analyse --by {by}")
        assert "\\<script\\>" in out  # the graph name, shown literally


def test_analyse_csv(capsys, model_file):
    guarded = 0
    for by in ("layer", "op", "block", "type"):
        code, out, _ = run(capsys, "analyse", model_file, "--by", by, "--format", "csv")
        assert code == 0
        assert_csv_safe(out, f"analyse --by {by} --format csv")
        guarded += sum(cell.startswith(("'@", "'\uff1d")) for row in csv.reader(io.StringIO(out)) for cell in row)
    assert guarded  # the guard was exercised, not merely unneeded


def test_analyse_json_keeps_the_exact_names(capsys, model_file):
    code, out, _ = run(capsys, "analyse", model_file, "--by", "layer", "--format", "json")
    assert code == 0
    assert_inert(out, "analyse --format json", json_text=True)
    doc = json.loads(out)
    assert doc["name"] == GRAPH_NAME
    layers = {r["layer"] for r in doc["rows"]}
    assert HUGE in layers or any(HUGE in l for l in layers)


def test_analyse_report_folder(capsys, model_file, tmp_path):
    out_dir = tmp_path / "report"
    code, out, _ = run(capsys, "analyse", model_file, "-o", out_dir)
    assert code == 0
    assert_markdown_safe(out, "analyse -o stdout")
    files = {p.name: p.read_text(encoding="utf-8") for p in out_dir.iterdir()}
    assert {"README.md", "summary.json", "ops.csv", "layers.csv", "blocks.csv"} <= set(files)
    assert_markdown_safe(files["README.md"], "README.md")
    assert files["README.md"].startswith("# \\<script\\>alert(1)\\</script\\>\\\\x1b\\[2J")
    for name in ("ops.csv", "layers.csv", "blocks.csv"):
        assert_csv_safe(files[name], name)
    assert_inert(files["summary.json"], "summary.json", json_text=True)
    summary = json.loads(files["summary.json"])
    assert summary["name"] == GRAPH_NAME
    assert summary["onnx"]["producer"] == f"{CLEAR + SCRIPT} {BIDI}"
    assert list(summary["onnx"]["inputs"]) == [INPUT] and list(summary["onnx"]["outputs"]) == [HUGE_OUT]
    assert any(CUSTOM_OP in u for u in summary["costs"]["unsupported_ops"])
    # `archkit report` indexes every summary.json in its folder, this one too
    from archkit.render.report import index

    assert_markdown_safe(index([summary]), "reports/README.md index")


def test_analyse_pictures_draw(capsys, model_file, tmp_path):
    """Names with `$` (mathtext) and escapes in chart titles and ticks neither fail nor leak."""
    code, _, _ = run(capsys, "analyse", model_file, "-o", tmp_path / "r", "--format", "png")
    assert code == 0
    assert (tmp_path / "r" / "blocks.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "r" / "memory.png").read_bytes().startswith(b"\x89PNG")  # blocks named in its strip


# --- archkit connectivity --------------------------------------------------------------------

@pytest.fixture(scope="module")
def connectivity_outputs(model_file, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("conn")
    results = {}
    for fmt in ("text", "md", "csv", "dot", "json"):  # module-scoped: capsys is per test
        capture = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(capture[0]), contextlib.redirect_stderr(capture[1]):
            args = ["connectivity", str(model_file), "--format", fmt] + (["-o", str(out_dir)] if fmt == "text" else [])
            code = main(args)
        results[fmt] = code, capture[0].getvalue(), capture[1].getvalue()
    return results, out_dir


@pytest.mark.parametrize("fmt", ["text", "md", "csv", "dot", "json"])
def test_connectivity_prints(connectivity_outputs, fmt):
    results, _ = connectivity_outputs
    code, out, err = results[fmt]
    assert code == 0, err
    assert_inert(err, f"connectivity {fmt} stderr")
    if fmt == "md":
        assert_markdown_safe(out, "connectivity --format md")
    elif fmt == "csv":
        assert_csv_safe(out, "connectivity --format csv")
    elif fmt == "json":
        assert_inert(out, "connectivity --format json", json_text=True)
        assert json.loads(out)["name"] == GRAPH_NAME
    else:
        assert_inert(out, f"connectivity --format {fmt}")
    if fmt == "dot":
        assert_dot_parses(out)


def assert_dot_parses(text: str) -> None:
    """Every statement line is one quoted ID or two joined by ->, and each quoted string closes."""
    quoted = r'"(?:[^"\\]|\\.)*"'
    for line in text.split("\n")[4:]:
        line = line.strip()
        if not line or line in ("}",) or line.startswith(("subgraph", "label=", "style=")):
            continue
        assert re.fullmatch(rf"{quoted}( -> {quoted})?( \[label={quoted}, fillcolor={quoted}\])?;", line), line[:300]


def test_connectivity_files(connectivity_outputs):
    _, out_dir = connectivity_outputs
    files = {p.name: p for p in out_dir.iterdir()}
    assert {"connectivity.md", "connectivity.csv", "connectivity.dot", "connectivity.png"} <= set(files)
    assert_markdown_safe(files["connectivity.md"].read_text(encoding="utf-8"), "connectivity.md")
    assert_csv_safe(files["connectivity.csv"].read_text(encoding="utf-8"), "connectivity.csv")
    dot = files["connectivity.dot"].read_text(encoding="utf-8")
    assert_inert(dot, "connectivity.dot")
    assert_dot_parses(dot)


def test_dot_ids_stay_distinct_when_names_are_cut():
    from archkit.render.drawing import _id

    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert _id(a) != _id(b) and len(_id(a)) < 300
    assert _id("conv1") == '"conv1"'


# --- error messages --------------------------------------------------------------------------

def test_error_message_with_a_hostile_name_is_one_inert_line(capsys, monkeypatch, model_file):
    import archkit.analysis as command
    from archkit.errors import MalformedModelError

    def fail(*a, **k):
        raise MalformedModelError(f"{model_file}: node {CLEAR + BREAKS + BIDI + HUGE} is inconsistent")

    monkeypatch.setattr(command, "analyse_file", fail)
    code, out, err = run(capsys, "analyse", model_file)
    assert code == 4 and out == ""
    assert err.count("\n") == 1 and err.startswith("archkit: error: ")
    assert len(err) < 1_100 and "chars]" in err and "\\x1b[2J" in err


def test_internal_error_line_is_inert(capsys, monkeypatch, model_file):
    import archkit.analysis as command

    def fail(*a, **k):
        raise KeyError(CLEAR + BIDI + HUGE)

    monkeypatch.setattr(command, "analyse_file", fail)
    code, _, err = run(capsys, "analyse", model_file)
    assert code == 1 and err.count("\n") == 1 and err.startswith("archkit: internal error: KeyError: ")
    assert err.rstrip().endswith("(rerun with --debug for the traceback)") and len(err) < 1_100


# --- archkit.render.escape, function by function ----------------------------------------------------

def test_name():
    assert esc.name("conv2d_1") == "conv2d_1"
    assert esc.name("/layer1/layer1.0/conv1/Conv") == "/layer1/layer1.0/conv1/Conv"
    assert esc.name("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert esc.name("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert esc.name("nul\x00\x7f\x9b") == "nul\\x00\\x7f\\x9b"
    assert esc.name("x\u202ey\u2066z\u200b\ufeff") == "x\\u202ey\\u2066z\\u200b\\ufeff"
    assert esc.name("tag\U000e0041") == "tag\\U000e0041"
    assert esc.name("\ud800") == "\\ud800"  # a lone surrogate: encodable once shown
    assert esc.name("café ∑ 卷积") == "café ∑ 卷积"  # printable Unicode stays
    assert esc.name("x" * 1_048_576) == "x" * 200 + "…[+1,048,376 chars]"
    assert esc.name("ab\ncd", limit=3) == "ab…[+3 chars]"  # an escape is never split
    assert esc.name("x" * 300, limit=None) == "x" * 300
    assert esc.name(42) == "42"


def test_every_invisible_character_is_shown():
    import unicodedata

    for cp in list(range(0x250)) + list(range(0x2000, 0x2070)) + [0x061C, 0x180E, 0xFEFF, 0xE0001]:
        ch = chr(cp)
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            assert esc.name(ch) != ch and esc.name(ch).isprintable(), hex(cp)


def test_terminal():
    assert esc.terminal("archkit: x.onnx: bad") == "archkit: x.onnx: bad"
    assert esc.terminal("a\x1b]8;;http://e\x07b") == "a\\x1b]8;;http://e\\x07b"
    assert len(esc.terminal("y" * 5_000)) == 1_000 + len("…[+4,000 chars]")


def test_md():
    assert esc.md("conv2d_1") == "conv2d_1" and isinstance(esc.md("x"), esc.Markdown)
    assert esc.md("a*b_c") == "a*b_c"
    assert esc.md("a|b") == "a\\|b"
    assert esc.md("<script>x</script>") == "\\<script\\>x\\</script\\>"
    assert esc.md("[x](javascript:alert(1))") == "\\[x\\](javascript:alert(1))"
    assert esc.md("a\\b`c&d") == "a\\\\b\\`c\\&d"
    assert esc.md("l1\nl2") == "l1\\\\nl2"  # shown as \n, its backslash escaped
    assert esc.md("z" * 250) == "z" * 200 + "…\\[+50 chars\\]"


def test_md_code():
    assert esc.md_code("conv1") == "`conv1`"
    assert esc.md_code("a|b") == "`a\\|b`"
    assert esc.md_code("a|b", table=False) == "`a|b`"
    assert esc.md_code("a\x1b") == "`a\\x1b`"
    assert esc.md_code("a`b") == "a\\`b"  # no code span can hold it: escaped text instead
    assert esc.md_code("<img src=x>") == "\\<img src=x\\>"
    assert esc.md_code("a&b|c") == "a\\&b\\|c"
    assert esc.md_code("a\\|b") == "a\\\\\\|b" and esc.md_code("a\\|b", table=False) == "`a\\|b`"


def test_csv_cell():
    assert esc.csv_cell("conv1") == "conv1"
    assert esc.csv_cell('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    assert esc.csv_cell("+1+1") == "'+1+1"
    assert esc.csv_cell("-2+3+cmd|' /C calc'!A0") == "'-2+3+cmd|' /C calc'!A0"
    assert esc.csv_cell("@SUM(1)") == "'@SUM(1)"
    assert esc.csv_cell("\uff1d1+1") == "'\uff1d1+1"
    assert esc.csv_cell("\t=1") == "\\t=1"  # the tab is shown as \t: no longer a formula
    assert esc.csv_cell("-12") == "-12" and esc.csv_cell("+3.5%") == "+3.5%" and esc.csv_cell("-1,024") == "-1,024"
    assert esc.csv_cell("a\x1bb") == "a\\x1bb"
    assert len(esc.csv_cell("q" * 5_000)) == 1_000 + len("…[+4,000 chars]")


def test_csv_frame():
    plain = pd.DataFrame({"name": ["conv1", "relu"], "macs": [-1, 2], "note": ["-12", None]})
    assert esc.csv_frame(plain) is plain  # nothing to change: the very frame, no copy
    hostile = pd.DataFrame({"name": ["=1+1", "ok"], "macs": [-1, 2], "shift": [-0.5, 1.0], "mixed": [-3, "@x"]})
    safe = esc.csv_frame(hostile)
    assert safe is not hostile and list(hostile["name"]) == ["=1+1", "ok"]  # the input is left alone
    assert list(safe["name"]) == ["'=1+1", "ok"]
    assert list(safe["macs"]) == [-1, 2] and list(safe["shift"]) == [-0.5, 1.0]
    assert list(safe["mixed"]) == [-3, "'@x"]
    wide = pd.DataFrame({"a": ["x" * 2_000], "b": ["y" * 2_000]})
    cut = esc.csv_frame(wide, limits={"b": None})
    assert len(cut["a"][0]) < 1_100 and cut["b"][0] == "y" * 2_000


def test_plot():
    assert esc.plot("conv1") == "conv1"
    assert esc.plot("$x^2$ costs $5") == "\\$x^2\\$ costs \\$5"
    assert esc.plot("a\x1bb") == "a\\x1bb"
