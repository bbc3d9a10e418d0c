"""Drives the web console in headless Chromium through Selenium.

Called by the Rust test tests/console/main.rs with one argument: a JSON file
naming the server's URL, the accounts and passwords, and what each page
must show (computed by the test from the database). Exits non-zero with a
message on the first check that fails; saves a screenshot of every page
visited in the "screenshots" directory the JSON names.
"""

import json
import os
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1280,1400",
]


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Console:
    def __init__(self, cfg, profile):
        self.cfg = cfg
        self.base = cfg["url"]
        self.shots = cfg["screenshots"]
        self.axe = None
        if cfg.get("axe"):
            with open(cfg["axe"], encoding="utf-8") as f:
                self.axe = f.read()
        self.violations = []
        opts = webdriver.ChromeOptions()
        opts.binary_location = cfg.get("chromium", "/usr/bin/chromium")
        for flag in FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={profile}")
        service = Service(cfg.get("chromedriver", "/usr/bin/chromedriver"))
        self.d = webdriver.Chrome(service=service, options=opts)
        self.d.set_page_load_timeout(60)

    def get(self, path, shot):
        self.d.get(self.base + path)
        self.shot(shot)

    def shot(self, name):
        self.d.save_screenshot(os.path.join(self.shots, f"{name}.png"))
        self.audit(name)

    def audit(self, name):
        """axe-core on the page: serious and critical violations are kept."""
        if not self.axe:
            return
        self.d.execute_script(self.axe)
        result = self.d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.slice(0, 3).map(n => n.html)}))))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));"
        )
        for v in result:
            if v["impact"] in ("serious", "critical"):
                self.violations.append((name, v))

    def text(self, css):
        found = self.d.find_elements(By.CSS_SELECTOR, css)
        if not found:
            self.d.save_screenshot(os.path.join(self.shots, "failure.png"))
            fail(f"no {css} on {self.d.current_url}:\n{self.d.page_source[:3000]}")
        return found[0].text

    def wait(self, what, fn, seconds=30):
        try:
            return WebDriverWait(self.d, seconds, poll_frequency=0.1).until(lambda d: fn())
        except TimeoutException:
            fail(f"timed out after {seconds} s waiting for: {what}")

    def login(self, name, password):
        self.d.get(self.base + "/login")
        self.d.find_element(By.ID, "name").clear()
        self.d.find_element(By.ID, "name").send_keys(name)
        self.d.find_element(By.ID, "password").send_keys(password)
        self.submit(By.ID, "login")

    def submit(self, by, what):
        """Clicks a submit button and waits for the answer page to replace this one."""
        old = self.d.find_element(By.TAG_NAME, "html")
        self.d.find_element(by, what).click()
        def replaced(_):
            # Any error about the old node (stale, detached mid-check) means
            # the page it belonged to is gone.
            try:
                old.is_enabled()
                return False
            except WebDriverException:
                return True

        try:
            WebDriverWait(self.d, 30, poll_frequency=0.05).until(replaced)
        except TimeoutException:
            fail(f"no answer page after submitting {what}")

    def logout(self):
        self.submit(By.ID, "logout")
        self.wait("the log-in page after log-out", lambda: "/login" in self.d.current_url)

    def path(self):
        return self.d.current_url[len(self.base):]


def customer_pages(c, cfg):
    acme = cfg["customer"]
    exp = cfg["expect"]
    c.login(acme["name"], acme["password"])
    c.wait("the overview after log-in", lambda: c.path() == "/")
    c.shot("overview")
    check(c.text("#user") == acme["name"], "the header names the account logged in")
    cookie = c.d.get_cookie("depot_session")
    check(cookie is not None and cookie.get("httpOnly") is True and cookie.get("sameSite") == "Strict",
          f"the session cookie is HttpOnly and SameSite=Strict: {cookie}")
    check(c.d.execute_script("return document.cookie.includes('depot_session');") is False,
          "scripts cannot read the session cookie")
    # A log-out posted without the session's CSRF token is refused and
    # the session goes on.
    status = c.d.execute_script(
        "const r = new XMLHttpRequest(); r.open('POST', '/logout', false);"
        "r.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');"
        "r.send('csrf=forged'); return r.status;")
    check(status == 400, f"a log-out with a forged CSRF token is refused (got {status})")
    c.d.get(c.base + "/")
    check(c.path() == "/", "the session survives a forged log-out")
    today = [td.text for td in c.d.find_elements(By.CSS_SELECTOR, "#today td")]
    want = [str(exp["deposits"]), str(exp["conversations"]), str(exp["picked"]), str(exp["rejections"])]
    check(today == want, f"today's figures {today} are the database's {want}")
    week = [td.text for td in c.d.find_elements(By.CSS_SELECTOR, "#week td")]
    check(week == want, f"the last 7 days' figures {week} are {want}")
    check(len(c.d.find_elements(By.CSS_SELECTOR, "svg.chart rect")) == 120, "the chart has 30 days x 4 bars")

    c.get("/conversations", "conversations")
    links = [a.text for a in c.d.find_elements(By.CSS_SELECTOR, "#conversations tbody tr td:first-child a")]
    check(sorted(links) == sorted(str(i) for i in exp["conversation_ids"]),
          f"the list shows exactly the account's conversations: {links} vs {exp['conversation_ids']}")
    for other in exp["other_ids"]:
        check(str(other) not in links, f"another account's conversation {other} is not listed")
    page = c.d.page_source
    check(exp["accented"] in page, f"the accented advisor name {exp['accented']!r} renders")
    # The picked filter narrows the list.
    c.get("/conversations?picked=no", "conversations-not-picked")
    shown = len(c.d.find_elements(By.CSS_SELECTOR, "#conversations tbody tr"))
    check(shown == exp["conversations"] - exp["picked"], f"the picked=no filter keeps the {shown} others")

    # Another account's conversation: a 404, as if it did not exist.
    for other in exp["other_ids"]:
        c.get(f"/conversations/{other}", f"other-account-{other}")
        check("Not found" in c.text("h1"), f"conversation {other} of another account answers Not found")
        status = c.d.execute_script(
            "const r = new XMLHttpRequest(); r.open('GET', arguments[0], false); r.send(); return r.status;",
            f"/v1/conversations/{other}/audio")
        check(status == 404, f"another account's audio answers 404 to the session (got {status})")

    cid = exp["crm_conversation"]
    c.get(f"/conversations/{cid}", "conversation")
    rows = {tr.find_element(By.TAG_NAME, "th").text: tr.find_element(By.TAG_NAME, "td").text
            for tr in c.d.find_elements(By.CSS_SELECTOR, "#additional tbody tr")}
    check(rows.get("team_name") == "diamond", f"the CRM column team_name = diamond is shown: {rows}")
    check("snapshot" in c.text("#crm-snapshot"), "the CRM snapshot the columns came from is named")
    meta = {tr.find_element(By.TAG_NAME, "th").text: tr.find_element(By.TAG_NAME, "td").text
            for tr in c.d.find_elements(By.CSS_SELECTOR, "#metadata tbody tr")}
    for k, v in exp["metadata"].items():
        check(meta.get(k) == v, f"metadata {k} = {v!r} is shown (got {meta.get(k)!r})")
    check(c.text("#sha256") == exp["sha256"], "the sha256 is shown")
    duration = c.wait("the audio element's duration",
                      lambda: c.d.execute_script(
                          "const a = document.getElementById('player');"
                          "return a && a.readyState >= 1 && a.duration > 0 ? a.duration : false;"))
    check(duration > 0.5, f"the audio reports a duration ({duration} s)")
    target = duration / 2
    c.d.execute_script(
        "const a = document.getElementById('player'); window.__seeked = false;"
        "a.addEventListener('seeked', () => { window.__seeked = true; }, {once: true});"
        "a.currentTime = arguments[0];", target)
    c.wait("the seek to complete", lambda: c.d.execute_script("return window.__seeked === true;"))
    now = c.d.execute_script("return document.getElementById('player').currentTime;")
    check(abs(now - target) < 0.5, f"seeking moved the player to {target:.2f} s (at {now:.2f} s)")
    seekable = c.d.execute_script(
        "const s = document.getElementById('player').seekable; return s.length ? s.end(0) : 0;")
    check(seekable > 0.5, f"the whole recording is seekable (to {seekable} s)")
    c.shot("conversation-after-seek")

    c.get("/rejections", "rejections")
    reasons = [td.text for td in c.d.find_elements(By.CSS_SELECTOR, "td.reason")]
    check(exp["rejection_reason"] in reasons, f"the rejection's reason is shown: {reasons}")
    paths = [td.text for td in c.d.find_elements(By.CSS_SELECTOR, ".rejections td.path")]
    check(exp["rejection_path"] in paths, f"the rejected file is named: {paths}")

    c.get("/advisors", "advisors")
    check(exp["accented"] in c.d.page_source, "the advisors page shows the accented name")
    c.get("/crm", "crm")
    check(len(c.d.find_elements(By.CSS_SELECTOR, "#snapshots tbody tr")) == exp["snapshots"], "every CRM snapshot is listed")
    c.get("/accounts", "customer-accounts")
    check("Not found" in c.text("h1"), "customers have no accounts page")
    c.get("/?account=" + exp["other_account"], "customer-other-overview")
    check("Not found" in c.text("h1"), "a customer cannot open another account's overview")

    # Log-out ends the session: the pages send back to the log-in form,
    # and so does the audio endpoint.
    c.get("/", "before-logout")
    c.logout()
    c.d.get(c.base + "/conversations")
    check(c.path().startswith("/login"), f"after log-out the pages need a log-in (at {c.path()})")
    status = c.d.execute_script(
        "const r = new XMLHttpRequest(); r.open('GET', arguments[0], false); r.send(); return r.status;",
        f"/v1/conversations/{cid}/audio")
    check(status == 401, f"after log-out the audio needs a log-in again (got {status})")


def operator_pages(c, cfg):
    op = cfg.get("operator")
    if not op:
        return
    c.login(op["name"], op["password"])
    c.wait("the overview after an operator's log-in", lambda: c.path() == "/")
    c.get("/accounts", "operator-accounts")
    names = [th.text for th in c.d.find_elements(By.CSS_SELECTOR, "#accounts tbody th")]
    check(sorted(names) == sorted(op["accounts"]), f"an operator sees every account: {names}")
    c.get("/conversations", "operator-conversations")
    links = [a.text for a in c.d.find_elements(By.CSS_SELECTOR, "#conversations tbody tr td:first-child a")]
    for other in cfg["expect"]["other_ids"]:
        check(str(other) in links, "an operator sees every account's conversations")
    c.logout()


def bans(c, cfg):
    # A key-only account cannot log in, whatever the password.
    c.login(cfg["key_only"], "anything")
    c.shot("login-refused")
    check("Wrong account name or password" in c.text("#login-error"), "a key-only account is refused")
    # Wrong passwords until the ban; the log-out check's refused audio
    # request counted too, as a refused API call does.
    refused = 1
    for _ in range(cfg["ban_after"]):
        c.login(cfg["customer"]["name"], "wrong-password")
        if c.d.find_elements(By.ID, "error-message"):
            break
        check("Wrong account name or password" in c.text("#login-error"), "a wrong password is refused")
        refused += 1
    check(refused >= 2, "wrong passwords were refused before the ban")
    c.shot("banned")
    check("Too many failed log-ins" in c.text("#error-message"), "the address is banned after the limit")
    # Banned: even the right password is refused now.
    c.login(cfg["customer"]["name"], cfg["customer"]["password"])
    check("Too many failed log-ins" in c.d.page_source, "a banned address cannot log in at all")


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    os.makedirs(cfg["screenshots"], exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="depot-chromium-") as profile:
        c = Console(cfg, profile)
        try:
            c.get("/login", "login")
            customer_pages(c, cfg)
            operator_pages(c, cfg)
            bans(c, cfg)
        finally:
            c.d.quit()
    if c.violations:
        for page, v in c.violations:
            print(f"axe {v['impact']} on {page}: {v['id']}: {v['help']} {v['nodes']}", file=sys.stderr)
        fail(f"{len(c.violations)} serious or critical accessibility violations")
    print("console: every browser check passed" + (" (with axe-core)" if c.axe else ""))


if __name__ == "__main__":
    main()
