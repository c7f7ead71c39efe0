"""The playground in a real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


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


def test_a_bad_value_shows_the_servers_reason_next_to_its_field(page, live_server):
    page.goto(f"{live_server.url}/")
    page.fill("#f-Population", "-5")
    page.fill("#f-HouseAge", "old")
    page.click("#predict")
    page.wait_for_selector('.field[data-field="HouseAge"].invalid')
    assert "must be a JSON number" in page.text_content("#e-HouseAge")
    assert "between 0 and 100000" in page.text_content("#e-Population")
    assert page.locator("#result").is_hidden()
    # fix one; only the other is still shown
    page.fill("#f-HouseAge", "41")
    page.click("#predict")
    # the page clears every error when it submits, so wait for the answer to fill one in again
    page.wait_for_function(
        "() => document.querySelector('#e-Population').textContent !== ''"
        " && document.querySelector('#e-HouseAge').textContent === ''"
    )
    assert "between 0 and 100000" in page.text_content("#e-Population")
