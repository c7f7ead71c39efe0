"""The pages in a real headless Chromium (Debian's), driven by Playwright: the playground's answers
and its wording, the drift page's summary and colours as real rows go through the service, and every
page's width on a phone (390 px) and a desktop.

Each test leaves full-page screenshots in its tmp_path (pytest --basetemp=DIR keeps them in DIR).
"""

from __future__ import annotations

import pytest

from model import data
from model.schema import FEATURE_NAMES
from service.monitor import STATUS_COLOURS
from service.telemetry import DRIFT, DRIFT_MIN_RECORDS, NOT_ENOUGH_DATA, STABLE
from tests.test_drift import _drift, _replay, cycle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 390, "height": 844}  # an iPhone 12-15's CSS viewport
DESKTOP = {"width": 1280, "height": 800}
WINDOW = 5_000


def test_predict_shows_a_price_and_changes_with_a_field(page, live_server):
    page.goto(f"{live_server.url}/")
    assert page.locator("#f-MedInc").input_value() == "8.3252"
    page.click("#predict")
    page.wait_for_selector("#result:not([hidden])")
    first = page.text_content("#price")
    assert first.startswith("$")
    assert len(page.text_content("#model-version")) == 12

    page.fill("#f-MedInc", "1.5")
    page.click("#predict")
    page.wait_for_function("prev => document.querySelector('#price').textContent !== prev", arg=first)
    cheaper = page.text_content("#price")

    def dollars(text: str) -> int:
        return int(text.replace("$", "").replace(",", ""))

    assert dollars(cheaper) < dollars(first)


def test_a_bad_value_shows_a_reason_for_people_next_to_its_field(page, live_server, tmp_path):
    page.goto(f"{live_server.url}/")
    page.fill("#f-Population", "-5")
    page.fill("#f-HouseAge", "old")
    page.click("#predict")
    page.wait_for_selector('.field[data-field="HouseAge"].invalid')
    # worded for people, with the field's name; the API's own wording is pinned in tests/test_service.py
    assert page.text_content("#e-HouseAge") == "HouseAge must be a number"
    assert page.text_content("#e-Population") == "Population must be between 0 and 100000 (people)"
    assert page.locator("#result").is_hidden()
    page.screenshot(path=tmp_path / "playground-errors.png", full_page=True)
    # fix one; only the other is still shown
    page.fill("#f-HouseAge", "41")
    page.click("#predict")
    # the page clears every error when it submits, so wait for the answer to fill one in again
    page.wait_for_function(
        "() => document.querySelector('#e-Population').textContent !== ''"
        " && document.querySelector('#e-HouseAge').textContent === ''"
    )
    assert "between 0 and 100000" in page.text_content("#e-Population")


def test_an_empty_field_asks_for_a_number(page, live_server):
    page.goto(f"{live_server.url}/")
    page.fill("#f-MedInc", "")
    page.click("#predict")
    page.wait_for_selector('.field[data-field="MedInc"].invalid')
    assert page.text_content("#e-MedInc") == "MedInc is empty: enter a number"


# ---- the drift page, as real rows go through the service -----------------------------------------


def _rgb(colour: str) -> str:
    """A "#rrggbb" colour as the browser's computed style writes it."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def _badges(page) -> dict[str, tuple[str, str, str]]:
    """The summary's badge of every column: (status shown, background, text colour)."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#summary .columns li')].map(li => {
            const badge = li.querySelector('.badge'), style = getComputedStyle(badge);
            const shown = [badge.dataset.status, style.backgroundColor, style.color];
            return [li.querySelector('a').textContent, shown];
        }))"""
    )


def _look(page, url: str, shot) -> tuple[str, str]:
    """Open the drift page at phone width, screenshot it; returns (verdict status, verdict text)."""
    page.set_viewport_size(PHONE)
    page.goto(f"{url}/drift/page")
    page.screenshot(path=shot, full_page=True)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    verdict = page.locator("#summary .verdict")
    return verdict.locator(".badge").get_attribute("data-status"), " ".join(verdict.inner_text().split())


def _assert_colours_follow_statuses(page, url: str) -> None:
    report = _drift(url)
    statuses = {
        **{n: e["status"] for n, e in report["features"].items()},
        "prediction": report["prediction"]["status"],
    }
    badges = _badges(page)
    assert set(badges) == set(statuses)
    for name, (shown, background, ink) in badges.items():
        assert shown == statuses[name], name
        assert (background, ink) == tuple(_rgb(c) for c in STATUS_COLOURS[shown]), name
    # every badge on the page, the charts' included, wears its own status's colours
    everywhere = page.evaluate(
        """() => [...document.querySelectorAll('.badge')].map(b => {
            const style = getComputedStyle(b);
            return [b.dataset.status, style.backgroundColor, style.color];
        })"""
    )
    assert len(everywhere) == 1 + 2 * len(statuses)  # the verdict, the summary's and the charts'
    for shown, background, ink in everywhere:
        assert (background, ink) == tuple(_rgb(c) for c in STATUS_COLOURS[shown]), shown
    # the card itself stays white whatever the statuses: only badges carry a status colour
    assert page.evaluate("getComputedStyle(document.querySelector('main')).backgroundColor") == _rgb(
        "#ffffff"
    )


@pytest.fixture
def fresh_server(trained_model_dir):
    """The real service (2 workers, the default window) started for one test, so its window is empty."""
    from testkit.live import gunicorn

    with gunicorn(trained_model_dir, {"WORKERS": "2", "DRIFT_WINDOW": str(WINDOW)}) as server:
        yield server


def test_the_drift_page_summary_and_colours_follow_a_restart_a_stable_and_a_shifted_window(
    page, fresh_server, tmp_path
):
    url = fresh_server.url
    rows = data.split(data.load_dataset()).X_test.to_numpy()

    # just restarted, two requests: nothing is judged
    _replay(url, rows[:2], batch=1)
    status, text = _look(page, url, tmp_path / "drift-restart-390.png")
    assert status == NOT_ENOUGH_DATA
    assert f"2 of the {DRIFT_MIN_RECORDS:,} records a PSI needs" in text
    assert {s for s, _, _ in _badges(page).values()} == {NOT_ENOUGH_DATA}
    _assert_colours_follow_statuses(page, url)

    # the test split: the population the model was trained on
    _replay(url, rows)
    status, text = _look(page, url, tmp_path / "drift-stable-390.png")
    assert (status, text) == (STABLE, "stable every feature is stable")
    assert page.text_content("#window").split()[1] == f"{len(rows) + 2:,}"
    assert " UTC to " in page.text_content("#span")
    _assert_colours_follow_statuses(page, url)

    # a full window of incomes x1.5: MedInc drifts, no other feature does
    shifted = rows.copy()
    shifted[:, FEATURE_NAMES.index("MedInc")] *= 1.5
    _replay(url, cycle(shifted, WINDOW))
    status, text = _look(page, url, tmp_path / "drift-shifted-390.png")
    assert status == DRIFT
    assert text == "drift in MedInc"
    badges = _badges(page)
    assert badges["MedInc"][0] == DRIFT
    assert {badges[n][0] for n in FEATURE_NAMES if n != "MedInc"} == {STABLE}
    _assert_colours_follow_statuses(page, url)
    # the drift badge is the loudest colour on the page, not pink on pink
    assert tuple(badges["MedInc"][1:]) == (_rgb(STATUS_COLOURS[DRIFT][0]), _rgb(STATUS_COLOURS[DRIFT][1]))
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=tmp_path / "drift-shifted-1280.png", full_page=True)


# ---- no page scrolls sideways ------------------------------------------------------------------


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone-390", "desktop-1280"])
@pytest.mark.parametrize("path", ["/", "/report", "/drift/page"])
def test_no_page_scrolls_sideways(page, live_server, path, viewport, tmp_path):
    page.set_viewport_size(viewport)
    page.goto(f"{live_server.url}{path}")
    page.wait_for_load_state("load")  # the report's figures are in, at their final size
    name = path.strip("/").replace("/", "-") or "playground"
    page.screenshot(path=tmp_path / f"{name}-{viewport['width']}.png", full_page=True)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= viewport["width"]


def test_the_reports_wide_tables_scroll_inside_their_own_box_on_a_phone(page, live_server):
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/report")
    for table in ("#metrics", "#price-bands"):
        box = page.evaluate(
            "t => { const b = document.querySelector(t).parentElement;"
            " return [b.className, getComputedStyle(b).overflowX, b.getBoundingClientRect().right]; }",
            table,
        )
        assert box[:2] == ["table-scroll", "auto"], table
        assert box[2] <= PHONE["width"], table
