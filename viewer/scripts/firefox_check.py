"""Manual check that a bundle works in Firefox from file:// (no geckodriver in Debian; Marionette is
built into Firefox). Needs Debian firefox-esr and `pip install marionette-driver` (PyPI).
Usage: python viewer/scripts/firefox_check.py file:///abs/path/BUNDLE/index.html
"""
import sys, time
from marionette_driver.marionette import Marionette
url = sys.argv[1]
m = Marionette(host="127.0.0.1", port=2828, bin="/usr/bin/firefox-esr", headless=True, gecko_log="/tmp/gecko.log")
m.start_session()
m.navigate(url)
for _ in range(100):
    n = m.execute_script("return document.querySelectorAll('[data-testid=cluster-card]').length;")
    if n: break
    time.sleep(0.2)
print("cards", n)
print("error", m.execute_script("const e = document.querySelector('[data-testid=start-error],[data-testid=load-error]'); return e ? e.innerText : null;"))
m.execute_script("window.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true}));")
time.sleep(0.5)
print("title", m.execute_script("const t = document.querySelector('[data-testid=cluster-title]'); return t ? t.innerText : null;"))
print("thumbs", m.execute_script("return Array.from(document.querySelectorAll('[data-testid=member-grid] img.thumb')).slice(0,4).map(i => i.complete && i.naturalWidth > 0);"))
m.execute_script("localStorage.setItem('x','1');")
print("storage", m.execute_script("return localStorage.getItem('x');"))
m.delete_session()
m.cleanup()
