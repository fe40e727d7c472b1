"""`styler ui` in a real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium): the page loads, a dropped photo comes back in every style, the strength slider changes
the preview, a tiny training run shows its progress and ends in the gallery, a bad upload shows
its error line. Skipped where no chromium is installed (``.ci/run`` installs it).

With ``STYLER_UI_SCREENSHOT=docs/img/ui.png`` the run also writes the page's screenshot there
(the one docs/ui.md and the README show); otherwise only into tmp_path.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from tests.conftest import make_photo

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from styler.io.weights import list_styles  # noqa: E402
from tests.test_ui_http import TINY_TRAINING, create_app, background  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "samples" / "content" / "astronaut.jpg"
WAIT = 60  # seconds any one thing may take on a busy machine
DOCS_WIDTH = 1000  # pixels across the screenshot in docs/ui.md and the README


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1400,1200"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@contextlib.contextmanager
def fresh_page(browser, weights_dir, tmp_path):
    """The browser on a fresh page of a fresh server."""
    app = create_app(weights_dir, "cpu", runs_root=tmp_path / "runs", train_overrides=TINY_TRAINING)
    with background(app) as url:
        browser.get(url)
        try:
            until(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        except TimeoutException:
            raise AssertionError(f"the page at {url} never got ready; it shows: "
                                 f"{browser.find_element(By.TAG_NAME, 'body').text[:500]!r}; "
                                 f"browser log: {browser.get_log('browser')}") from None
        yield browser


@pytest.fixture
def page(browser, tmp_path, weights):
    """A page with the tiny ``demo`` style and the bundled ones."""
    with fresh_page(browser, weights, tmp_path) as driver:
        yield driver


@pytest.fixture
def bundled_page(browser, tmp_path):
    """A page with the bundled styles only (the screenshot shows them)."""
    with fresh_page(browser, tmp_path / "no-styles-of-yours", tmp_path) as driver:
        yield driver


def until(driver, condition, timeout=WAIT):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def grid_rows(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#grid .row")


def loaded(driver, image) -> bool:
    return driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image)


def digest(driver, image) -> list[int]:
    """The preview's pixels, coarsely: 8x8 grey means drawn on a canvas."""
    return driver.execute_script("""
        const img = arguments[0], canvas = document.createElement('canvas');
        canvas.width = canvas.height = 8;
        const context = canvas.getContext('2d');
        context.drawImage(img, 0, 0, 8, 8);
        const data = context.getImageData(0, 0, 8, 8).data, out = [];
        for (let i = 0; i < data.length; i += 4) out.push(Math.round((data[i] + data[i + 1] + data[i + 2]) / 3));
        return out;""", image)


def test_a_dropped_photo_comes_back_in_every_style(page, weights):
    assert page.title == "styler"
    assert [b.text for b in page.find_elements(By.CSS_SELECTOR, "nav button")] == ["Try", "Train", "Styles"]
    # A drop as the browser delivers it: a DataTransfer holding a File, dispatched on the drop zone.
    page.execute_script("const probe = document.createElement('input'); probe.type = 'file'; probe.id = 'probe';"
                        "document.body.append(probe);")
    page.find_element(By.ID, "probe").send_keys(str(ASTRONAUT))
    page.execute_script("""
        const transfer = new DataTransfer();
        for (const file of document.getElementById('probe').files) transfer.items.add(file);
        const drop = new DragEvent('drop', {dataTransfer: transfer, bubbles: true});
        document.getElementById('drop').dispatchEvent(drop);""")
    until(page, lambda d: grid_rows(d))
    styles = [s.name for s in list_styles(weights) if s.error is None and not s.shadowed]
    figures = grid_rows(page)[0].find_elements(By.TAG_NAME, "figure")
    assert [f.text for f in figures] == ["astronaut.jpg", *styles]
    until(page, lambda d: all(loaded(d, f.find_element(By.TAG_NAME, "img")) for f in figures))
    assert len({tuple(digest(page, f.find_element(By.TAG_NAME, "img"))) for f in figures}) == len(figures)


def test_moving_the_strength_slider_changes_the_preview(bundled_page, tmp_path):
    page = bundled_page
    page.find_element(By.ID, "photo-input").send_keys(str(ASTRONAUT))
    until(page, lambda d: grid_rows(d))
    page.find_element(By.CSS_SELECTOR, '#grid figure[data-style="starry"]').click()
    result = page.find_element(By.ID, "detail-result")
    until(page, lambda d: "strength=1&" in (result.get_attribute("data-query") or "") and loaded(d, result))
    screenshot(page, tmp_path)
    full_style = digest(page, result)
    page.find_element(By.ID, "strength").send_keys(Keys.HOME)  # the keyboard moves it to 0
    until(page, lambda d: "strength=0&" in (result.get_attribute("data-query") or "") and loaded(d, result))
    until(page, lambda d: digest(d, result) != full_style)
    original = digest(page, page.find_element(By.ID, "detail-original"))
    assert max(abs(a - b) for a, b in zip(digest(page, result), original)) <= 3  # strength 0: the photo itself
    assert "strength=0&" in page.find_element(By.ID, "download").get_attribute("href")


def screenshot(driver, tmp_path, suffix: str = "") -> None:
    """The page as a user sees it; with $STYLER_UI_SCREENSHOT (a .png) also written there, the
    Train part's beside it with ``_train`` added to the name."""
    path = tmp_path / f"ui{suffix}.png"
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))
    shot = Image.open(path).convert("RGB")
    assert shot.width >= 1000 and len(shot.getcolors(1 << 24)) > 100  # the page with its pictures, not a blank
    if os.environ.get("STYLER_UI_SCREENSHOT"):
        target = Path(os.environ["STYLER_UI_SCREENSHOT"])
        target = target.with_name(f"{target.stem}{suffix}{target.suffix}")
        # The docs' copy stays under 200 KB: the blank page below the content cut off, 1000 px
        # wide, 96 colours (photos in a PNG cost the bytes; the text stays sharp).
        blank = Image.new("RGB", shot.size, shot.getpixel((shot.width - 1, shot.height - 1)))
        bottom = ImageChops.difference(shot, blank).getbbox()[3]
        docs = shot.crop((0, 0, shot.width, min(shot.height, bottom + 24)))
        docs = docs.resize((DOCS_WIDTH, round(docs.height * DOCS_WIDTH / docs.width)), Image.Resampling.LANCZOS)
        docs.quantize(96).save(target, optimize=True)


def test_a_tiny_training_run_shows_progress_and_ends_in_the_gallery(page, tmp_path, style_image):
    photos = [make_photo(tmp_path / "photos" / f"p{i}.png", seed=i) for i in range(6)]
    page.find_element(By.CSS_SELECTOR, 'nav button[data-tab="train"]').click()

    def submit(name: str, steps: int) -> None:
        form = page.find_element(By.ID, "train-form")
        field = form.find_element(By.NAME, "style_name")
        field.clear()
        field.send_keys(name)
        form.find_element(By.NAME, "painting").send_keys(str(style_image))
        form.find_element(By.NAME, "photos").send_keys("\n".join(str(p) for p in photos))
        Select(form.find_element(By.NAME, "how_long")).select_by_value("steps")
        form.find_element(By.NAME, "steps").clear()
        form.find_element(By.NAME, "steps").send_keys(str(steps))
        Select(form.find_element(By.NAME, "features")).select_by_value("random")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        until(page, lambda d: d.find_elements(By.CSS_SELECTOR, ".job h3") and
              name in [h.text for h in d.find_elements(By.CSS_SELECTOR, ".job h3")])

    def card(name: str):
        cards = page.find_elements(By.CSS_SELECTOR, ".job")
        return next(c for c in cards if c.find_element(By.TAG_NAME, "h3").text == name)

    submit("long", 100_000)
    submit("tiny", 4)
    # The first runs: its step, time left and loss curve show; the second waits its turn.
    until(page, lambda d: "of 100000" in card("long").find_element(By.CLASS_NAME, "state").text)
    assert card("tiny").find_element(By.CLASS_NAME, "state").text == "waiting: 1 job ahead"
    until(page, lambda d: len(card("long").find_element(By.TAG_NAME, "polyline").get_attribute("points").split()) > 2)
    assert "left" in card("long").find_element(By.CLASS_NAME, "state").text
    card("long").find_element(By.CLASS_NAME, "stop").click()
    until(page, lambda d: card("long").get_attribute("data-state") == "stopped")
    assert "the best generator so far is saved" in card("long").find_element(By.CLASS_NAME, "state").text
    until(page, lambda d: card("tiny").get_attribute("data-state") == "finished")
    assert card("tiny").find_element(By.CLASS_NAME, "state").text == 'finished after 4 steps: the style "tiny" is ready'
    until(page, lambda d: loaded(d, card("tiny").find_element(By.CLASS_NAME, "preview")))  # its latest preview
    screenshot(page, tmp_path, "_train")
    page.find_element(By.CSS_SELECTOR, 'nav button[data-tab="styles"]').click()

    def row(name: str):  # the table is redrawn whenever it reloads: find the row afresh each time
        rows = page.find_elements(By.CSS_SELECTOR, f'tr[data-style="{name}"]')
        return rows[0] if rows else None

    until(page, lambda d: row("tiny") is not None and loaded(d, row("tiny").find_element(By.TAG_NAME, "img")))
    text = row("tiny").text  # its painting (found through its run folder) has loaded
    assert "yours" in text and "random" in text and re.search(r"\s4 \(\d\)", text), text
    assert row("long") is not None


def test_a_bad_upload_shows_its_error_line(page, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo")
    page.find_element(By.ID, "photo-input").send_keys(str(notes))
    error = page.find_element(By.ID, "try-error")
    until(page, lambda d: error.text)
    assert error.text == "notes.jpg: not an image Pillow can read" and not grid_rows(page)
    page.find_element(By.ID, "photo-input").send_keys(str(make_photo(tmp_path / "fine.png")))
    until(page, lambda d: grid_rows(d))  # the server kept running
    assert error.text == ""
