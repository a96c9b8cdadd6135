//! Headless Chromium for the page tests, driven over WebDriver with
//! fantoccini: each `Browser` starts its own chromedriver on an ephemeral
//! port and a headless Chromium with a fresh profile, so tests never share
//! cookies. `screenshot(name)` saves a PNG under target/screenshots/.
//!
//! Debian: `apt-get install chromium chromium-driver` (`.ci/run` does).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a step waits for the next page.
const PAGE_WAIT: Duration = Duration::from_secs(20);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    /// Prefix of this test's screenshots.
    test: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("screenshots")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium; fails with how to
    /// install them when they are missing.
    pub async fn start(test: &str) -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: the page tests need Chromium and its WebDriver. \
                 On Debian: `sudo apt-get install chromium chromium-driver` (.ci/run does this)."
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("a profile folder");
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1000,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({ "binary": CHROMIUM, "args": args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        for _ in 0..100 {
            // chromedriver listens on loopback: plain HTTP, no TLS stack.
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(caps.clone());
            match builder.connect(&url).await {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                        test: test.to_owned(),
                    };
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver on port {port} did not start a session: {last_error}");
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigation");
    }

    /// Saves the page as target/screenshots/<test>-<name>.png.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot folder");
        let path = dir.join(format!("{}-{name}.png", self.test));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }

    /// The element `css` names, waiting for it while the page loads (a
    /// loaded CI machine can be slow to render the next page).
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let found = self
            .client
            .wait()
            .at_most(PAGE_WAIT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => panic!("{css} on {:?}: {e}", self.client.current_url().await),
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("typing");
    }

    /// Clicks `css` (every click in these tests submits a form or follows
    /// a link) and waits until the page it was on is gone, so the next
    /// step reads the new page, never the old one.
    pub async fn click(&self, css: &str) {
        let old_page = self.find("html").await;
        self.find(css).await.click().await.expect("click");
        let deadline = std::time::Instant::now() + PAGE_WAIT;
        loop {
            match old_page.tag_name().await {
                Err(e) if e.is_stale_element_reference() => return,
                _ if std::time::Instant::now() > deadline => {
                    panic!("clicking {css} left the page in place for {PAGE_WAIT:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Clicks `css` on the page as it is (a radio button, a checkbox, a
    /// button that runs script), without waiting for another page.
    pub async fn tick(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Whether the element `css` names carries `class`.
    pub async fn has_class(&self, css: &str, class: &str) -> bool {
        let classes = self
            .find(css)
            .await
            .attr("class")
            .await
            .expect("class attribute")
            .unwrap_or_default();
        classes.split_whitespace().any(|c| c == class)
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("url")
            .path()
            .to_owned()
    }

    /// The whole address the browser is at.
    pub async fn url(&self) -> url::Url {
        self.client.current_url().await.expect("url")
    }

    pub async fn h1(&self) -> String {
        self.text("h1").await
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
