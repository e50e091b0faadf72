//! A small WebDriver client for the UI tests: starts Debian's `chromedriver`
//! on a port it picks itself (`--port=0`, read from its output), opens a
//! headless Chromium session and speaks the W3C protocol as plain JSON over
//! HTTP. A missing driver or browser fails the test; scripts/test installs
//! them.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key W3C WebDriver names element references by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    driver: Child,
    port: u16,
    id: String,
    open: bool,
}

/// An element of the current page.
#[derive(Clone, Debug)]
pub struct Element(String);

fn which(program: &str) -> String {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{program} not found on PATH; scripts/test installs it"))
        .to_string_lossy()
        .into_owned()
}

impl Browser {
    /// A headless Chromium with a window of `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let chromium = which("chromium");
        let mut driver = Command::new(which("chromedriver"))
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let stdout = driver.stdout.take().expect("chromedriver stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let port = loop {
            line.clear();
            if reader
                .read_line(&mut line)
                .expect("read chromedriver output")
                == 0
            {
                panic!("chromedriver exited before it started");
            }
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest
                    .trim()
                    .trim_end_matches('.')
                    .parse::<u16>()
                    .expect("chromedriver port");
            }
        };
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let http = berth_net::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Prompts (delete confirmations) stay open until the test
            // answers them.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("create a WebDriver session")
            .json()
            .await
            .expect("session answer");
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {resp}"))
            .to_owned();
        let browser = Browser {
            http,
            session: format!("{base}/session/{id}"),
            driver,
            port,
            id,
            open: true,
        };
        browser
            .command(
                "POST",
                "/timeouts",
                json!({"implicit": 5000, "pageLoad": 30000, "script": 15000}),
            )
            .await;
        browser
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error.
    pub async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        match self.try_command(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    pub async fn try_command(
        &self,
        method: &str,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.session);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(v["value"].clone())
        } else {
            Err(format!("{status}: {}", v["value"]))
        }
    }

    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({"url": url})).await;
    }

    pub async fn current_url(&self) -> String {
        self.command("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element `css` selects, waiting for it (implicit wait).
    pub async fn find(&self, css: &str) -> Element {
        let v = self
            .try_command(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await
            .unwrap_or_else(|e| panic!("no element {css:?}: {e}"));
        Element(v[ELEMENT].as_str().expect("element reference").to_owned())
    }

    /// How many elements `css` selects now (no waiting).
    pub async fn count(&self, css: &str) -> u64 {
        self.script(
            "return document.querySelectorAll(arguments[0]).length",
            json!([css]),
        )
        .await
        .as_u64()
        .unwrap_or(0)
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.command("POST", &format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.command("POST", &format!("/element/{}/clear", e.0), json!({}))
            .await;
        self.command(
            "POST",
            &format!("/element/{}/value", e.0),
            json!({"text": text}),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.command("GET", &format!("/element/{}/text", e.0), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's visible text.
    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    /// Runs `script` (a function body; `arguments` are `args`), awaiting
    /// a returned promise.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits until `script` returns true.
    pub async fn wait_until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.script(script, json!([])).await == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Accepts the open confirmation, waiting for it to appear.
    pub async fn accept_prompt(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = self.try_command("GET", "/alert/text", Value::Null).await {
                self.command("POST", "/alert/accept", json!({})).await;
                return text.as_str().unwrap_or_default().to_owned();
            }
            assert!(Instant::now() < deadline, "no confirmation appeared");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Lets pages read the clipboard (for checking what a copy button
    /// copied).
    pub async fn grant_clipboard(&self) {
        for name in ["clipboard-read", "clipboard-write"] {
            self.command(
                "POST",
                "/permissions",
                json!({"descriptor": {"name": name}, "state": "granted"}),
            )
            .await;
        }
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// The page as PNG, the window stretched to the page's height first (up
    /// to 3000 px) so that the picture shows all of it.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let rect = self.command("GET", "/window/rect", Value::Null).await;
        let (width, height) = (
            rect["width"].as_u64().unwrap_or(1280),
            rect["height"].as_u64().unwrap_or(900),
        );
        let page_height = self
            .script("return document.documentElement.scrollHeight", json!([]))
            .await
            .as_u64()
            .unwrap_or(height);
        let outer = self
            .script("return window.outerHeight - window.innerHeight", json!([]))
            .await
            .as_u64()
            .unwrap_or(0);
        let stretched = (page_height + outer).clamp(height, 3000);
        self.set_window(width as u32, stretched as u32).await;
        let png = self.command("GET", "/screenshot", Value::Null).await;
        self.set_window(width as u32, height as u32).await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("screenshot data"))
            .expect("screenshot base64")
    }

    /// Ends the session (closing the browser) and the driver.
    pub async fn quit(mut self) {
        let _ = self.try_command("DELETE", "", Value::Null).await;
        self.open = false;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that failed midway still closes its browser: the session
        // is ended with a plain blocking request (no runtime in a drop),
        // then the driver is stopped.
        if self.open {
            use std::io::{Read, Write};
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    s,
                    "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.id
                );
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
