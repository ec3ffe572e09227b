//! A minimal W3C WebDriver client (HTTP/1.1 over a TCP socket, JSON bodies) driving Debian's
//! headless Chromium through `chromedriver`: enough to open a page, run script, press keys, click,
//! upload a file and find downloads. Nothing here downloads a browser.
//!
//! The browser tests run when `chromedriver` and `chromium` are installed (or `CHROMEDRIVER` and
//! `CHROME_BIN` name them). Without them they are skipped with a message, unless
//! `HUDD_BROWSER_TESTS=require` (CI sets it), which turns a missing browser into a failure.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver key codes.
pub const ARROW_LEFT: &str = "\u{E012}";
pub const ARROW_RIGHT: &str = "\u{E014}";

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    /// Where downloads land.
    pub downloads: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium; `None` (with a message) when they are not
    /// installed and not required.
    pub fn start() -> Option<Browser> {
        let required = std::env::var("HUDD_BROWSER_TESTS").is_ok_and(|v| v == "require");
        let driver = find("CHROMEDRIVER", &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
        let chrome = find("CHROME_BIN", &["/usr/bin/chromium", "/usr/lib/chromium/chromium"]);
        let (Some(driver), Some(chrome)) = (driver, chrome) else {
            assert!(!required, "HUDD_BROWSER_TESTS=require but chromium / chromedriver are not installed");
            eprintln!("skipped: no chromium + chromedriver (apt install chromium chromium-driver)");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let profile = tempfile::tempdir().unwrap();
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let mut b = Browser { driver: child, port, session: String::new(), downloads, _profile: profile };
        let start = Instant::now();
        while b.raw("GET", "/status", None).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000",
                         format!("--user-data-dir={}", b._profile.path().join("profile").display())],
                "prefs": {"download.default_directory": b.downloads, "download.prompt_for_download": false}
            }
        }}});
        let v = b.raw("POST", "/session", Some(&caps)).expect("new session");
        b.session = v["value"]["sessionId"].as_str().expect("session id").to_string();
        Some(b)
    }

    fn raw(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        // chromedriver keeps the connection open: read the head, then Content-Length bytes.
        let mut resp = Vec::new();
        let mut buf = [0u8; 65536];
        let head_end = loop {
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            resp.extend_from_slice(&buf[..n]);
            if let Some(i) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&resp[..head_end]).to_ascii_lowercase();
        let length =
            head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
        match length {
            Some(len) => {
                while resp.len() < head_end + len {
                    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    resp.extend_from_slice(&buf[..n]);
                }
            }
            None => {
                s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
            }
        }
        let raw_body = String::from_utf8_lossy(&resp[head_end..]).into_owned();
        let body = if head.contains("transfer-encoding: chunked") { dechunk(&raw_body) } else { raw_body };
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if v["value"].get("error").is_some() {
            return Err(format!("{method} {path}: {}", v["value"]));
        }
        Ok(v)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.raw(method, &path, body.as_ref()).unwrap_or_else(|e| panic!("{e}"))["value"].clone()
    }

    /// Opens a URL.
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `js` (a function body; `arguments` holds `args`) and returns its value.
    pub fn script(&self, js: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", Some(json!({ "script": js, "args": args })))
    }

    /// Polls the expression `js` until it is truthy (at most 20 s); returns its value.
    pub fn wait_for(&self, js: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.script(&format!("return ({js});"), json!([]));
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let body = self.script("return document.body.innerText.slice(0, 2000);", json!([]));
                panic!("timed out waiting for `{js}`; page text: {body}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element(&self, css: &str) -> String {
        let v = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    /// Clicks the first element matching `css` (a real pointer click, not a script event).
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// The path of download `name` once the browser has written it (20 s at most).
    pub fn downloaded(&self, name: &str) -> PathBuf {
        let file = self.downloads.join(name);
        let start = std::time::Instant::now();
        while !file.is_file() {
            assert!(start.elapsed().as_secs() < 20, "no download at {}", file.display());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // Chromium renames the finished file into place; give it a moment to be complete.
        std::thread::sleep(std::time::Duration::from_millis(300));
        file
    }

    /// Gives a file to the `<input type=file>` matching `css`.
    pub fn upload(&self, css: &str, file: &Path) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/value"), Some(json!({"text": file.to_str().unwrap()})));
    }

    /// Presses and releases each key in turn (keyboard events go to the focused element).
    pub fn keys(&self, keys: &[&str]) {
        let actions: Vec<Value> = keys
            .iter()
            .flat_map(|k| [json!({"type": "keyDown", "value": k}), json!({"type": "keyUp", "value": k})])
            .collect();
        self.call(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// `file://` URL of a path.
pub fn file_url(path: &Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap();
    format!("file://{}", abs.to_str().unwrap())
}
