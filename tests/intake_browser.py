#!/usr/bin/env python3
"""Browser test of the intake page: headless Debian chromium driven by
Selenium at a 375 px wide viewport. Opens a service-point code URL, picks
非常不满意, is told to pick a reason, picks one, submits, sees the thank-you
page. Screenshots go to the folder given as the second argument.

Usage: intake_browser.py URL SCREENSHOT_DIR
"""
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def wait_text(driver, text):
    """Waits for the page a click navigated to (a form post is not awaited by click())."""
    WebDriverWait(driver, 10).until(lambda d: text in d.page_source, message=f"{text!r} never showed")


def main():
    url, shots = sys.argv[1], sys.argv[2]
    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=375,812", "--lang=zh-CN"):
        opts.add_argument(a)
    opts.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.set_window_size(375, 812)
        driver.get(url)
        buttons = driver.find_elements(By.CSS_SELECTOR, "button.level")
        words = [b.text for b in buttons]
        assert words == ["非常满意", "满意", "基本满意", "不满意", "非常不满意"], words
        for b in buttons:
            assert b.size["height"] >= 48, ("button too small", b.text, b.size)
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 375, ("horizontal overflow", width)
        size = driver.execute_script("return getComputedStyle(document.body).fontSize")
        assert float(size.rstrip("px")) >= 18, size
        driver.save_screenshot(os.path.join(shots, "form.png"))
        buttons[-1].click()
        wait_text(driver, "请选择不满意的原因")
        driver.find_element(By.CSS_SELECTOR, "button.submit").click()
        wait_text(driver, "请至少选择一个不满意的原因")
        driver.save_screenshot(os.path.join(shots, "reason.png"))
        driver.find_element(By.CSS_SELECTOR, "input[name=reason]").click()
        driver.find_element(By.ID, "comment").send_keys("等了一个小时")
        driver.find_element(By.CSS_SELECTOR, "button.submit").click()
        wait_text(driver, "感谢您的评价")
        assert "工作日内" in driver.page_source
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 375, ("horizontal overflow", width)
        driver.save_screenshot(os.path.join(shots, "thanks.png"))
    finally:
        driver.quit()
    print("OK")


if __name__ == "__main__":
    main()
