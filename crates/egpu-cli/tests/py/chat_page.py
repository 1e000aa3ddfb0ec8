"""The chat page in a real browser: Debian's headless Chromium driven by Selenium.

usage: chat_page.py URL CHROMIUM CHROMEDRIVER SCREENSHOT.png
Loads the page, sends a message, checks that the answer arrived in several growing pieces
(recorded in the page by a MutationObserver), that the speed is shown, and that a second turn
carries the conversation; saves a screenshot.
"""
import os
import sys
import tempfile

# Selenium must use the given driver and browser, never fetch its own.
os.environ["SE_OFFLINE"] = "true"

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

URL, CHROMIUM, DRIVER, SHOT = sys.argv[1:5]
WAIT = 300  # seconds: generation on a busy 2-core CI machine


def main():
    profile = tempfile.mkdtemp(prefix="egpu-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={profile}", "--window-size=1000,720"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        driver.get(URL)
        wait = WebDriverWait(driver, WAIT)
        model = driver.find_element(By.ID, "model")
        wait.until(lambda d: model.text not in ("", "connecting…"))
        assert "SmolLM2" in model.text, model.text
        # Record every text the answer bubble shows while it streams.
        driver.execute_script("""
            window.seen = [];
            new MutationObserver(() => {
              const b = document.querySelector('.msg.assistant.streaming');
              if (b) window.seen.push(b.textContent);
            }).observe(document.getElementById('log'), {childList: true, subtree: true, characterData: true});
        """)
        box = driver.find_element(By.ID, "input")
        box.send_keys("What is the capital of France?")
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant .meta"))
        bubble = driver.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1]
        meta = bubble.find_element(By.CSS_SELECTOR, ".meta").text
        answer = bubble.text.replace(meta, "").strip()
        seen = [s for s in driver.execute_script("return window.seen") if s]
        distinct = list(dict.fromkeys(seen))
        assert "Paris" in answer, answer
        assert len(distinct) >= 3, f"the answer did not stream: {distinct}"
        assert all(answer.startswith(s.strip()) or s.strip() == "" for s in distinct), distinct
        assert "tok/s" in meta, meta
        assert "tok/s" in driver.find_element(By.ID, "status").text
        print(f"ok  page streamed {len(distinct)} growing texts: {answer!r} [{meta}]")

        # A second turn: the page sends the whole conversation.
        box.send_keys("Thank you!")
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant .meta")) == 2)
        users = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".msg.user")]
        assert users == ["What is the capital of France?", "Thank you!"], users
        assert not driver.find_elements(By.CSS_SELECTOR, ".msg.error")
        driver.save_screenshot(SHOT)
        print(f"ok  second turn answered; screenshot {SHOT}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
