"""The viewer page in a real browser (Debian's chromium driven by Playwright): whole answers, many viewers,
an API restart mid-stream, and model output that tries to run script."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import submit, wait_status

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs Debian's)")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def page_factory(browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def make(width: int = 1100, height: int = 900) -> Any:
        # bypass_csp: Playwright's waits evaluate script, which the page's CSP forbids. It also makes the
        # script-injection test stricter: it proves the renderer safe without the CSP's help.
        context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        return page

    yield make
    for context in contexts:
        context.close()


def _wait_done(page: Any, timeout_ms: int = 60_000) -> None:
    page.wait_for_selector("body[data-done=true]", state="attached", timeout=timeout_ms)


def _answer_text(page: Any) -> str:
    return str(page.inner_text("#answer")).strip()


def test_a_finished_generation_renders_whole(client: httpx.Client, api_url: str, page_factory: Any) -> None:
    prompt = "plain sim:reasoning_tokens=30 sim:content_tokens=40"
    gid = submit(client, prompt)
    record = wait_status(client, gid, {"completed"})
    page = page_factory()
    page.goto(f"{api_url}/g/{gid}")
    _wait_done(page)
    assert page.inner_text("#status").startswith("completed")
    assert _answer_text(page) == record["content"].strip()
    assert page.inner_text("#reasoning").strip() == record["reasoning"].strip()
    assert "70 tokens (30 reasoning)" in page.inner_text("#tokens")
    assert page.is_visible("#sim-note")  # the simulator is labelled as such
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-finished.png"), full_page=True)


def test_markdown_renders_with_code_blocks(client: httpx.Client, api_url: str, page_factory: Any) -> None:
    text = "# Plan\n\nSome **bold** and `inline` code.\n\n```python\nprint('hi')\n```\n\n- one\n- two"
    gid = submit(client, f"{text} sim:echo=1 sim:reasoning_tokens=5")
    wait_status(client, gid, {"completed"})
    page = page_factory()
    page.goto(f"{api_url}/g/{gid}")
    _wait_done(page)
    assert page.inner_text("#answer h1") == "Plan"
    assert page.inner_text("#answer strong") == "bold"
    assert page.inner_text("#answer pre code") == "print('hi')"
    assert page.locator("#answer li").all_inner_texts() == ["one", "two"]


def test_model_output_never_runs_as_script(client: httpx.Client, api_url: str, page_factory: Any) -> None:
    hostile = (
        '<script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2"> '
        "[click](javascript:window.__pwned=3) <svg onload=window.__pwned=4>"
    )
    gid = submit(client, f"{hostile} sim:echo=1 sim:reasoning_tokens=5")
    wait_status(client, gid, {"completed"})
    page = page_factory()
    page.goto(f"{api_url}/g/{gid}")
    _wait_done(page)
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#answer img, #answer script, #answer svg, #answer a").count() == 0
    shown = _answer_text(page)
    assert "<script>window.__pwned = 1</script>" in shown and 'onerror="window.__pwned = 2"' in shown


def test_tool_calls_show_as_text(client: httpx.Client, api_url: str, page_factory: Any) -> None:
    """Issue 16: a tool call's name and arguments appear as they stream, as text (a model's arguments are model
    output like any other)."""
    hostile = '{"q":"<img/src=x/onerror=window.__pwned=5>"}'
    gid = submit(client, f"tools sim:reasoning_tokens=5 sim:tool_calls=1 sim:tool=search sim:tool_args={hostile}")
    wait_status(client, gid, {"completed"})
    page = page_factory()
    page.goto(f"{api_url}/g/{gid}")
    _wait_done(page)
    assert page.inner_text("#tool-calls").strip() == f"search({hostile})"
    assert page.locator("#tool-calls img").count() == 0 and page.evaluate("window.__pwned") is None


def test_two_pages_watch_one_generation_live(client: httpx.Client, api_url: str, page_factory: Any) -> None:
    prompt = "shared view sim:reasoning_tokens=240 sim:content_tokens=60 sim:tokens_per_s=40"
    gid = submit(client, prompt)
    pages = [page_factory(), page_factory(width=390, height=844)]  # a phone-width screen too
    for page in pages:
        page.goto(f"{api_url}/g/{gid}")
    pages[0].wait_for_function("document.getElementById('reasoning').textContent.length > 40")
    pages[0].wait_for_function("document.getElementById('viewers').textContent.startsWith('2 watching')")
    ARTIFACTS.mkdir(exist_ok=True)
    pages[0].screenshot(path=str(ARTIFACTS / "viewer-running.png"), full_page=True)
    for page in pages:
        _wait_done(page)
    record = client.get(f"/v1/generations/{gid}").json()
    assert [_answer_text(p) for p in pages] == [record["content"].strip()] * 2
    assert pages[1].evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    pages[1].screenshot(path=str(ARTIFACTS / "viewer-phone.png"), full_page=True)


def test_the_page_survives_an_api_restart(cluster: Any, page_factory: Any) -> None:
    c = cluster()
    c.start_api()
    c.add_worker()
    prompt = "restart the api sim:reasoning_tokens=80 sim:content_tokens=80 sim:tokens_per_s=40"
    with httpx.Client(base_url=c.url, timeout=30) as client:
        gid = submit(client, prompt)
        page = page_factory()
        page.goto(f"{c.url}/g/{gid}")
        page.wait_for_function("document.getElementById('reasoning').textContent.length > 60")
        c.api.stop()
        time.sleep(0.5)
        c.start_api()
        _wait_done(page, timeout_ms=60_000)
        record = client.get(f"/v1/generations/{gid}").json()
    assert record["status"] == "completed"
    assert _answer_text(page) == record["content"].strip()
    assert page.inner_text("#reasoning").strip() == record["reasoning"].strip()


def test_submit_from_the_index_page(api_url: str, page_factory: Any) -> None:
    page = page_factory()
    page.goto(f"{api_url}/")
    page.fill("textarea[name=prompt]", "From the form sim:reasoning_tokens=5 sim:content_tokens=5")
    page.fill("input[name=max_tokens]", "50")
    page.click("button[type=submit]")
    page.wait_for_url("**/g/gen_*")
    _wait_done(page)
    assert page.inner_text("#status").startswith("completed")
    page.goto(f"{api_url}/")
    page.wait_for_selector("#recent a")
    assert "From the form" in page.inner_text("#recent")


def test_a_share_link_opens_the_viewer_without_a_key(keyed: Any, page_factory: Any) -> None:
    """EventSource cannot send headers: the link's ?token= carries read-only access to this one generation."""
    from tests.conftest import ALICE

    with httpx.Client(base_url=keyed.url, headers={"Authorization": f"Bearer {ALICE}"}, timeout=30) as alice:
        gid = submit(alice, "shared in a browser sim:reasoning_tokens=20 sim:content_tokens=30")
        record = wait_status(alice, gid, {"completed"})
        share = alice.post(f"/v1/generations/{gid}/share").json()
    page = page_factory()
    page.goto(keyed.url + share["page_url"])
    _wait_done(page)
    assert _answer_text(page) == record["content"].strip()
    assert page.inner_text("#status").startswith("completed")
    page.wait_for_function("document.getElementById('viewers').textContent.includes('watching')")

    stranger = page_factory()
    stranger.goto(f"{keyed.url}/g/{gid}")  # no token, no key
    stranger.wait_for_selector("#error:not([hidden])")
    assert "share link or API key" in stranger.inner_text("#error")
    assert stranger.inner_text("#status") == "unavailable"
    ARTIFACTS.mkdir(exist_ok=True)
    stranger.screenshot(path=str(ARTIFACTS / "viewer-without-credentials.png"), full_page=True)
    assert _answer_text(stranger) == ""


def test_a_key_typed_into_the_page_submits_and_watches(keyed: Any, page_factory: Any) -> None:
    from tests.conftest import ALICE

    page = page_factory()
    page.goto(keyed.url + "/")
    page.fill("textarea[name=prompt]", "from the page sim:reasoning_tokens=10 sim:content_tokens=12")
    page.click("button[type=submit]")
    page.wait_for_selector("#submit-error:text('API key')")
    assert page.evaluate("document.getElementById('key-box').open")
    page.fill("input[name=key]", ALICE)
    page.click("#key-form button")
    page.click("#submit button[type=submit]")
    page.wait_for_url("**/g/gen_*")
    _wait_done(page)
    assert page.inner_text("#status").startswith("completed")
    assert _answer_text(page)
    link = page.get_attribute("#share-link", "href")
    assert link is not None and "?token=" in link  # the page made itself a read-only link for its stream
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-with-key.png"), full_page=True)
    gid = page.url.rsplit("/", 1)[1]
    with httpx.Client(base_url=keyed.url, headers={"Authorization": f"Bearer {ALICE}"}, timeout=30) as alice:
        assert _answer_text(page) == alice.get(f"/v1/generations/{gid}").json()["content"].strip()


def test_a_new_user_sees_the_prompt_the_label_and_their_own_viewer(
    client: httpx.Client, api_url: str, page_factory: Any
) -> None:
    """Issue 11: someone opening a link did not see the question; the watching count left the viewer out and
    updated every 3 s."""
    prompt = "What is shown?\nA second line. sim:reasoning_tokens=200 sim:content_tokens=10 sim:tokens_per_s=40"
    gid = submit(client, prompt)
    page = page_factory(width=1280, height=900)
    opened = time.monotonic()
    page.goto(f"{api_url}/g/{gid}")
    page.wait_for_function("document.getElementById('viewers').textContent.startsWith('1 watching')")
    assert time.monotonic() - opened < 2.5  # within 2 s of the page's stream opening (plus page load)
    assert page.is_visible("#prompt-pane") and not page.evaluate("document.getElementById('prompt-pane').open")
    page.click("#prompt-pane summary")
    shown = page.inner_text("#prompt").replace("\n", " ").strip()
    assert shown.lower().startswith("user what is shown? a second line.")  # the role label is upper-cased by CSS
    assert page.is_visible("#sim-note")
    second = page_factory()
    second.goto(f"{api_url}/g/{gid}")
    page.wait_for_function("document.getElementById('viewers').textContent.startsWith('2 watching')", timeout=2_500)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-prompt-1280.png"), full_page=True)
    _wait_done(page)


def test_an_unknown_id_is_a_404_page_that_says_so(api_url: str, page_factory: Any) -> None:
    page = page_factory()
    response = page.goto(f"{api_url}/g/gen_doesNotExist0000000000")
    assert response is not None and response.status == 404
    assert "There is no generation" in page.inner_text("main")
    assert page.evaluate("document.querySelector('link[rel=icon]').href").endswith("/static/favicon.svg")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_index_page_at_desktop_and_phone_widths(
    client: httpx.Client, api_url: str, page_factory: Any, width: int
) -> None:
    """No word broken inside in the recent table; the model field offers /v1/models; saving a key confirms."""
    gid = submit(client, "A table row with ordinary words in it sim:reasoning_tokens=2 sim:content_tokens=2")
    wait_status(client, gid, {"completed"})
    page = page_factory(width=width, height=900)
    page.goto(f"{api_url}/")
    page.wait_for_selector("#recent a")
    # no text of a status / model / time cell is split over lines (each of its text nodes lies on one line)
    broken = page.evaluate(
        """[...document.querySelectorAll('#recent td.nowrap')].filter(td => td.offsetParent !== null).flatMap(td =>
             [...td.childNodes].map(n => { const r = document.createRange(); r.selectNodeContents(n);
               return new Set([...r.getClientRects()].map(rect => Math.round(rect.top))).size; }))
           .filter(lines => lines > 1).length"""
    )
    page.screenshot(path=str(ARTIFACTS / f"index-{width}.png"), full_page=True)
    assert broken == 0
    # a word of the preview is never split across two lines
    assert page.evaluate("getComputedStyle(document.querySelector('#recent td.preview')).wordBreak") == "normal"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("[...document.querySelectorAll('#models option')].map(o => o.value)") == ["reasonq-sim"]
    assert "simulated" in page.inner_text("#recent")
    page.click("#key-box summary")
    page.fill("input[name=key]", "some-key-0123456789")
    page.click("#key-form button")
    assert "Saved in this browser" in page.inner_text("#key-saved")
    page.fill("input[name=key]", "")
    page.click("#key-form button")  # an empty key removes it again
    assert "removed" in page.inner_text("#key-saved")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"index-{width}.png"), full_page=True)


def test_in_keys_mode_without_a_key_the_recent_list_says_one_is_needed(keyed: Any, page_factory: Any) -> None:
    page = page_factory(width=390, height=844)
    page.goto(keyed.url + "/")
    page.wait_for_selector("#recent-note:not([hidden])")
    assert "asks for an API key" in page.inner_text("#recent-note")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "index-keys-mode-390.png"), full_page=True)
