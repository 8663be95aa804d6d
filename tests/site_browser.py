#!/usr/bin/env python3
"""Browser test of the intranet site: headless Debian chromium driven by
Selenium. An office signs in, opens last month's newest report (charts
shown), downloads its XLSX (the file arrives); editing the URL to another
office's report gives the 404 page; an inspector opens the inspection view of
an older as-of version; an admin opens the health page; five wrong passwords lock an account. Screenshots at
1280 and 375 px go to the folder given.

Usage: site_browser.py BASE_URL SHOTS_DIR DOWNLOAD_DIR SPEC_JSON
SPEC_JSON: {"office": [user, password, office_id], "other_office": id,
            "inspector": [user, password], "older": {"path": ..., "command": ...},
            "admin": [user, password], "locker": [user, password]}
"""
import glob
import json
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def wait_text(driver, text):
    """Waits for the page a click navigated to (a form post is not awaited by click())."""
    WebDriverWait(driver, 15).until(lambda d: text in d.page_source, message=f"{text!r} never showed")


def no_overflow(driver, width):
    scroll = driver.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= width, ("horizontal overflow", driver.current_url, scroll, width)


def shoot(driver, shots, name, widths=(1280, 375)):
    for w in widths:
        driver.set_window_size(w, 1000)
        time.sleep(0.2)
        if name != "report":  # the mail's own HTML has fixed-width tables; the site's pages must fit
            no_overflow(driver, w)
        driver.save_screenshot(os.path.join(shots, f"{name}-{w}.png"))
    driver.set_window_size(1280, 1000)


def sign_in(driver, base, user, password):
    driver.get(base + "/login")
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button.primary").click()


def sign_out(driver):
    driver.find_element(By.XPATH, "//button[text()='退出']").click()
    wait_text(driver, "用户名")


def office_part(driver, base, shots, downloads, spec):
    user, password, office = spec["office"]
    shoot(driver, shots, "login")
    sign_in(driver, base, user, password)
    wait_text(driver, "本单位报告")
    shoot(driver, shots, "list")
    first = driver.find_elements(By.LINK_TEXT, "查看")[0]
    assert "2026-10" in first.get_attribute("href"), first.get_attribute("href")
    first.click()
    wait_text(driver, "下载 XLSX")
    images = driver.find_elements(By.TAG_NAME, "img")
    assert images, "the report shows its charts"
    for img in images:
        loaded = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        assert loaded, ("chart not loaded", img.get_attribute("src"))
    shoot(driver, shots, "report")
    for w in (1280, 375):  # the whole report, charts included, for a person to look at
        driver.set_window_size(w, 1000)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(w, min(height + 100, 12000))
        time.sleep(0.3)
        driver.save_screenshot(os.path.join(shots, f"report-full-{w}.png"))
    driver.set_window_size(1280, 1000)
    report_url = driver.current_url
    driver.find_element(By.ID, "xlsx").click()
    deadline = time.time() + 20
    while not glob.glob(os.path.join(downloads, "*.xlsx")):
        assert time.time() < deadline, ("no XLSX arrived", os.listdir(downloads))
        time.sleep(0.2)
    got = glob.glob(os.path.join(downloads, "*.xlsx"))[0]
    with open(got, "rb") as f:
        assert f.read(2) == b"PK", "an XLSX is a zip"
    # Editing the URL to another office's report: the same page as a report that does not exist.
    other = spec["other_office"]
    driver.get(report_url.replace(office, other))
    wait_text(driver, "页面不存在，或您无权查看。")
    driver.get(report_url.replace("/r/", "/bad/").rsplit("/", 1)[0])
    wait_text(driver, "差评清单")
    shoot(driver, shots, "bad")
    sign_out(driver)


def inspector_part(driver, base, shots, spec):
    user, password = spec["inspector"]
    sign_in(driver, base, user, password)
    wait_text(driver, "全部报告")
    driver.get(base + spec["older"]["path"])
    wait_text(driver, "复现命令")
    command = driver.find_element(By.CSS_SELECTOR, "pre.command").text
    assert command == spec["older"]["command"], (command, spec["older"]["command"])
    assert "outbox" in driver.page_source, "the delivery records are shown"
    shoot(driver, shots, "inspect")
    sign_out(driver)


def admin_part(driver, base, shots, spec):
    user, password = spec["admin"]
    sign_in(driver, base, user, password)
    wait_text(driver, "全部报告")
    driver.find_element(By.LINK_TEXT, "运行状况").click()
    wait_text(driver, "服务锁")
    assert "monthly-report" in driver.page_source and "下次运行" in driver.page_source
    shoot(driver, shots, "health")
    sign_out(driver)


def lockout_part(driver, base, shots, spec):
    user, password = spec["locker"]
    for i in range(5):
        sign_in(driver, base, user, "wrong-password-%d" % i)
        wait_text(driver, "账户已锁定" if i == 4 else "用户名或密码错误")
    # Locked: even the right password is refused now.
    sign_in(driver, base, user, password)
    wait_text(driver, "账户已锁定")
    shoot(driver, shots, "locked")


def main():
    base, shots, downloads, spec = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000", "--lang=zh-CN"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"download.default_directory": downloads, "download.prompt_for_download": False})
    opts.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
        office_part(driver, base, shots, downloads, spec)
        inspector_part(driver, base, shots, spec)
        admin_part(driver, base, shots, spec)
        lockout_part(driver, base, shots, spec)
    finally:
        driver.quit()
    print("OK")


if __name__ == "__main__":
    main()
