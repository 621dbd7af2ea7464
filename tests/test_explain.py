"""`rnnlab explain RUN_DIR` in a real browser: for each experiment a tiny run trained here, its
page opened from its file in Debian's Chromium (driven by Playwright, the system browser)
with no console error and no request but the file itself; moving a control (slider, hover,
select) shows the probabilities the model computes for that step, recomputed here in Python
through the model's own forward; a screenshot is taken. Without Chromium these tests skip,
saying so (`.ci/run` installs it)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

from rnnlab.cli import main
from rnnlab.data import Vocabulary
from rnnlab.data.lm_text import load_text
from rnnlab.experiments import EXPERIMENTS, langid, mnist, postag, restore
from rnnlab.experiments.experiment import some_wrong
from rnnlab.experiments.text_features import FEATURES, correlations, features, track
from rnnlab.report import render_explain_page

pytestmark = pytest.mark.usefixtures("no_network")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
QUIET = ["--no-progress", "--no-plots"]
SHOWN = 0.0005 + 1e-6  # the page shows probabilities to 3 decimals


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A page opened from its file, recording console errors and every request it makes."""

    def __init__(self, browser, path: Path) -> None:
        self.uri = path.resolve().as_uri()
        self.page = browser.new_page(viewport={"width": 1200, "height": 800})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(self.uri)

    def bars(self, box: str = "#bars") -> dict[str, float]:
        """The label and the number of each bar the page shows in `box`."""
        rows = self.page.locator(f"{box} .bar-row")
        return {
            rows.nth(i).locator(".bar-label").inner_text(): float(
                rows.nth(i).locator(".bar-value").inner_text()
            )
            for i in range(rows.count())
        }

    def slide(self, step: int) -> None:
        self.page.locator("#step").fill(str(step))

    def close(self, screenshot: Path) -> None:
        """Take the screenshot; then the page must have logged no error and asked for
        nothing but its own file."""
        self.page.screenshot(path=str(screenshot), full_page=True)
        self.page.close()
        assert screenshot.stat().st_size > 10_000
        assert self.errors == []
        assert self.requests == [self.uri]


def explain(run_dir: Path, capsys, *options: str) -> Path:
    capsys.readouterr()
    assert main(["explain", str(run_dir), *options]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == run_dir / "explain.html"
    return path


def assert_shown(shown: dict[str, float], expected: dict[str, float]) -> None:
    assert shown.keys() == expected.keys()
    for label, value in expected.items():
        assert abs(shown[label] - value) <= SHOWN, (label, shown[label], value)


@torch.no_grad()
def test_mnist_page_shows_the_classes_probabilities_after_each_row(
    tiny_mnist_run, browser, tmp_path, capsys
):
    path = explain(tiny_mnist_run, capsys, "--images", "6")
    saved = restore(tiny_mnist_run, EXPERIMENTS)
    test = saved.experiment.load_data(saved.config, saved.record.meta).test
    classes = saved.record.meta["classes"]
    page = Page(browser, path)
    assert page.page.locator("#gallery .chip").count() == 6
    for chip, rows in ((0, 28), (3, 1), (5, 13)):
        page.page.locator("#gallery .chip").nth(chip).click()
        page.slide(rows)
        index = int(re.search(r"test image (\d+)", page.page.inner_text("#verdict")).group(1))
        image, _ = test[index]
        # the model's own forward over the first `rows` rows: its readout of h_rows
        probs = saved.model(image[None, :rows]).softmax(dim=-1)[0]  # (10,)
        assert_shown(page.bars(), dict(zip(classes, probs.tolist(), strict=True)))
        assert page.page.inner_text("#step-label") == f"rows read: {rows} of 28"
    page.page.click("#play")
    page.page.wait_for_function("document.querySelector('#step').value === '28'")
    page.close(tmp_path / "mnist.png")


@pytest.fixture
def play_run(tmp_path) -> Path:
    """A tiny `rnnlab lm` run on a play whose lines hold quotes and brackets."""
    rng = random.Random(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis"]
    lines = []
    for i in range(600):
        said = rng.choices(words, k=6)
        said[2] = f'"{said[2]} {said[3]}"' if i % 3 else f"({said[2]})"
        lines += ["HAMLET:" if i % 2 else "OPHELIA:", " ".join(said) + ".", ""]
    play = tmp_path / "play.txt"
    play.write_text("\n".join(lines), encoding="utf-8")
    small = ["--hidden", "16", "--embedding", "8", "--bptt", "20", "--batch-size", "4"]
    args = ["lm", "--text-file", str(play), "--epochs", "2", "--sample-length", "0", *small]
    assert main([*args, "--out-dir", str(tmp_path), *QUIET]) == 0
    return tmp_path / "lm"


@torch.no_grad()
def test_a_pixel_by_pixel_run_shows_the_answer_after_every_28_pixels(tiny_mnist, tmp_path):
    args = ["mnist", "--data-dir", str(tiny_mnist), "--val-size", "5", "--hidden", "8"]
    args += ["--sequence", "permuted", "--epochs", "1", "--out-dir", str(tmp_path), *QUIET]
    with torch.enable_grad():
        assert main(args) == 0
    saved = restore(tmp_path / "mnist-permuted", EXPERIMENTS)
    page = mnist.explain(saved, mnist.ExplainOptions(images=3))
    assert page["unit"] == "pixel" and page["order"] == saved.record.meta["pixel_order"]
    test = saved.experiment.load_data(saved.config, saved.record.meta).test
    steps, classifier = saved.model[0], saved.model[1]  # the pixels in their order, the RNN
    for image in page["images"]:
        x = steps(test[image["index"]][0][None])  # (1, 784, 1)
        for frame in (0, 13, 27):  # after 28, 392 and 784 pixels
            expected = classifier(x[:, : 28 * (frame + 1)]).softmax(dim=-1)[0]  # (10,)
            assert image["probs"][frame] == pytest.approx(expected.tolist(), abs=1e-6)
        assert image["predicted"] == int(saved.model(test[image["index"]][0][None]).argmax())


@torch.no_grad()
def test_lm_page_shows_each_tokens_probability_the_next_ones_and_the_units(
    play_run, browser, tmp_path, capsys
):
    path = explain(play_run, capsys, "--length", "300", "--start", "40")
    saved = restore(play_run, EXPERIMENTS)
    vocab = Vocabulary.from_dict(saved.record.meta["vocabulary"])
    val = load_text(text_file=saved.config.text_file, vocab=vocab, progress=False).val.long()
    start = 40 + int((val[40:] == vocab.index("\n")).nonzero()[0]) + 1  # the next line's start
    ids = val[start : start + 300]  # (300,)
    page = Page(browser, path)
    spans = page.page.locator("#text .tok")
    shown = "".join(spans.nth(i).inner_text() for i in range(spans.count()))
    assert shown.replace("↵", "") == vocab.decode(ids)
    model = saved.model
    for i in (0, 17, 123, 299):
        spans.nth(i).hover()
        model.reset_state()  # the model's own forward from a zero state, over tokens 0..i
        probs = model(ids[None, : i + 1])[0, -1].softmax(dim=-1)  # (V,)
        top = probs.topk(5)
        names = [{"\n": "↵", " ": "␣"}.get(t, t) for t in map(vocab.token, top.indices.tolist())]
        assert_shown(page.bars("#next"), dict(zip(names, top.values.tolist(), strict=True)))
        if i < 299:  # and the probability it gave the token that came next
            said = page.page.inner_text("#next-info")
            assert float(said.rsplit(" ", 1)[1]) == pytest.approx(
                float(probs[ids[i + 1]]), abs=SHOWN
            )
    unit = page.page.locator("#features .unit").first
    number = int(unit.get_attribute("data-unit"))
    unit.click()
    assert page.page.locator("#colour-by").input_value() == str(number)
    for i in (5, 250):  # the top layer's state after token i, from the model's own step
        _, state = model.step(ids[None, : i + 1])  # (L, 1, H), or (h, c) for an LSTM
        h = state[0] if isinstance(state, tuple) else state  # (L, 1, H)
        title = spans.nth(i).get_attribute("title")
        assert float(title.removeprefix("h = ")) == pytest.approx(
            float(h[-1, 0, number]), abs=SHOWN
        )
    names = page.page.locator("#features tr td:first-child div:first-child").all_inner_texts()
    assert names == [f.name for f in FEATURES]
    page.close(tmp_path / "lm.png")


@pytest.fixture
def langid_run(lists, tmp_path) -> Path:
    """A tiny `rnnlab langid` run on the made-up word lists."""
    tiny = ["--words", "20", "--hidden", "8", "--embedding", "6", "--batch-size", "16"]
    args = ["langid", "--data-dir", str(lists), *tiny, "--epochs", "3", "--out-dir", str(tmp_path)]
    assert main([*args, *QUIET]) == 0
    return tmp_path / "langid"


@torch.no_grad()
def test_langid_page_shows_the_languages_as_a_word_is_read_and_without_each_letter(
    langid_run, browser, tmp_path, capsys
):
    run_dir = langid_run
    path = explain(run_dir, capsys)
    saved = restore(run_dir, EXPERIMENTS)
    meta = saved.record.meta
    encode = langid.WordEncoder(meta).encode
    page = Page(browser, path)
    assert page.page.locator("#words .chip").count() == 12
    assert page.page.locator("#words .chip.wrong").count() >= 1
    for chip, step in ((0, 1), (4, 3), (9, 100)):
        page.page.locator("#words .chip").nth(chip).click()
        word = re.search(r"“(\w+)”", page.page.inner_text(".verdict")).group(1)
        steps = min(step, len(word) + 2)
        page.slide(steps)
        probs = saved.model(pack_sequence([encode(word)[:steps]])).softmax(dim=-1)[0]  # (C,)
        expected = dict(zip(meta["languages"], probs.tolist(), strict=True))
        shown = page.bars()
        assert len(shown) == 8
        assert_shown(shown, {language: expected[language] for language in shown})
        answer = int(saved.model(pack_sequence([encode(word)])).argmax())
        for i in (0, len(word) - 1):  # the word without its letter i
            without = saved.model(pack_sequence([encode(word[:i] + word[i + 1 :])]))
            value = page.bars("#removal")[word[:i] + "_" + word[i + 1 :]]
            assert value == pytest.approx(float(without.softmax(dim=-1)[0, answer]), abs=SHOWN)
    page.close(tmp_path / "langid.png")


@pytest.fixture
def postag_run(corpus, tmp_path) -> Path:
    """A tiny `rnnlab postag` run on the made-up Brown-style corpus."""
    tiny = ["--hidden", "8", "--embedding", "6", "--batch-size", "8", "--epochs", "2"]
    args = ["postag", "--data-dir", str(corpus), *tiny, "--out-dir", str(tmp_path)]
    assert main([*args, *QUIET]) == 0
    return tmp_path / "postag"


@torch.no_grad()
def test_postag_page_shows_each_words_tag_probabilities_and_marks_mistakes(
    postag_run, browser, tmp_path, capsys
):
    path = explain(postag_run, capsys)
    saved = restore(postag_run, EXPERIMENTS)
    meta = saved.record.meta
    test = saved.experiment.load_data(saved.config, meta).test.sentences
    page = Page(browser, path)
    sentences = page.page.locator("#sentences .sentence")
    assert sentences.count() == len(test)  # 6 test sentences: fewer than a dozen
    ids, _ = postag.vocabularies(meta)
    for s, i in ((0, 0), (2, 3), (5, 4)):
        word = sentences.nth(s).locator(".word").nth(i)
        word.hover()
        words = sentences.nth(s).locator(".word .w").all_inner_texts()
        encoded = postag.encode(words, ids, meta["lowercase"])  # (T,)
        probs = saved.model(pack_sequence([encoded])).softmax(dim=-1)[0, i]  # (C,)
        shown = page.bars()
        expected = dict(zip(meta["tags"], probs.tolist(), strict=True))
        assert_shown(shown, {tag: expected[tag] for tag in shown})
        assert list(shown) == sorted(expected, key=expected.get, reverse=True)[: len(shown)]
    gold = [t for s in test for _, t in s]
    predicted = page.page.locator("#sentences .word .t").all_inner_texts()
    wrong = sum(p != g for p, g in zip(predicted, gold, strict=True))
    assert page.page.locator("#sentences .word.wrong").count() == wrong
    page.close(tmp_path / "postag.png")


@pytest.fixture
def seq2seq_run(tmp_path) -> Path:
    """`rnnlab seq2seq` with its defaults: the seed's "hello" -> "ohlol"."""
    assert main(["seq2seq", "--out-dir", str(tmp_path), *QUIET]) == 0
    return tmp_path / "seq2seq"


@torch.no_grad()
def test_seq2seq_page_shows_each_steps_output_distribution(seq2seq_run, browser, tmp_path, capsys):
    path = explain(seq2seq_run, capsys)
    saved = restore(seq2seq_run, EXPERIMENTS)
    vocab = Vocabulary.from_dict(saved.record.meta["vocabulary"])
    probs = saved.model(torch.tensor([vocab.encode("hello")])).softmax(dim=-1)[0]  # (5, V)
    page = Page(browser, path)
    assert page.page.inner_text("#pairs .chip") == "hello → " + vocab.decode(probs.argmax(-1))
    for step in (1, 4, 5, 2):
        page.slide(step)
        assert_shown(page.bars(), dict(zip(vocab.tokens, probs[step - 1].tolist(), strict=True)))
        assert page.page.inner_text("#step-label").startswith(f"step {step} of 5: input “")
    page.close(tmp_path / "seq2seq.png")


def test_explain_refuses_bad_options_in_one_line(seq2seq_run, tiny_mnist_run, tmp_path, capsys):
    for args in (
        [str(seq2seq_run), "--text", "xyz"],
        [str(tiny_mnist_run), "--images", "0"],
        [str(tmp_path)],
    ):
        assert main(["explain", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rnnlab explain: error: ") and err.count("\n") == 1
    assert not (seq2seq_run / "explain.html").exists()


def test_text_features_follow_quotes_brackets_the_line_the_word_and_the_speech():
    pieces = list('A:\nsay "hi" (x)\nyes\n\nB:\n')
    values = features(pieces)  # (T, 6)
    after = {i: values[i].tolist() for i in range(len(pieces))}
    assert after[0] == [0, 0, 1, 1, 1, 0] and after[1] == [0, 0, 2, 0, 1, 0]  # "A:" names
    assert after[2] == [0, 0, 0, 0, 0, 1]  # the newline: column 0 of the speech's first line
    assert after[7] == [1, 0, 5, 0, 0, 1] and after[9] == [1, 0, 7, 2, 0, 1]  # '"' opens
    assert after[10] == [0, 0, 8, 0, 0, 1]  # the closing quote
    assert after[12] == [0, 1, 10, 0, 0, 1] and after[14] == [0, 0, 12, 0, 0, 1]  # ( and )
    assert after[18] == [0, 0, 3, 3, 0, 2]  # "yes": the speech's second line
    assert after[21][4:] == [1, 0]  # "B:" after a blank line starts a speech


def test_units_are_ranked_by_their_correlation_with_each_feature():
    pieces = list('A:\nto be "or not" (to) be\n\nB:\nthat is "the" question\n')
    column = features(pieces)[:, 2]  # the position in the line
    h = torch.randn(len(pieces), 6, generator=torch.Generator().manual_seed(0))  # (T, 6)
    h[:, 4] = -0.1 * column  # unit 4 counts the line backwards: r = -1
    h[:, 1] = 0.0  # a unit that never moves
    assert torch.allclose(correlations(h, column)[4], torch.tensor(-1.0, dtype=torch.float64))
    assert correlations(h, column)[1] == 0
    ranked = {f["name"]: f for f in track(h, pieces, top=3)}
    assert ranked["position in the line"]["units"][0] == [4, pytest.approx(-1.0)]
    assert len(ranked["inside quotes"]["units"]) == 3
    assert track(h[:3], list("abc"), top=3)[0]["missing"] == "never changes in these 3 tokens"


def test_some_wrong_takes_about_a_third_wrong_in_order():
    correct = [True, False, True, True, False, True, False, False, True, True]
    assert some_wrong(correct, 6) == [0, 1, 2, 3, 4, 5]  # 2 wrong, 4 right
    assert some_wrong(correct, 9) == [0, 1, 2, 3, 4, 5, 6, 8, 9]  # 3 wrong, the 6 right
    assert some_wrong([False] * 4, 3) == [0, 1, 2]
    assert some_wrong([True, False], 12) == [0, 1]


def test_the_page_holds_its_data_as_json_that_no_text_can_break_out_of():
    text = '</script><script>alert("x")</script><!-- & {{DATA}}'
    page = {"kind": "seq2seq", "title": text, "pairs": [], "vocab": [text], "p": 1 / 3}
    html = render_explain_page(page)
    data = html.split('<script type="application/json" id="data">')[1].split("</script>")[0]
    assert json.loads(data) == {**page, "p": 0.33333}
    assert html.count("</script>") == 2 and "<script>alert" not in html
    with pytest.raises(ValueError, match="not finite"):
        render_explain_page({**page, "p": float("nan")})
    with pytest.raises(ValueError, match="kind must be one of"):
        render_explain_page({"kind": "chess"})
