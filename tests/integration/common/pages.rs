//! A browser-like HTTP client for the page tests: a cookie store, no
//! automatic redirects (tests look at each 303), and helpers that read a
//! form's hidden fields and submit it.

use reqwest::redirect::Policy;
use reqwest::{Client, Response};

use super::TestApp;

pub struct Visitor {
    pub http: Client,
    pub base: String,
}

/// The `value` of the input named `name` in a page, HTML entities decoded.
pub fn field(html: &str, name: &str) -> Option<String> {
    let pattern = format!(r#"name="{}"[^>]*?value="([^"]*)""#, regex::escape(name));
    let re = regex::Regex::new(&pattern).expect("pattern");
    re.captures(html).map(|c| unescape(&c[1]))
}

/// The text inside the element with this id.
pub fn by_id(html: &str, id: &str) -> Option<String> {
    let pattern = format!(r#"id="{}"[^>]*>([^<]*)<"#, regex::escape(id));
    let re = regex::Regex::new(&pattern).expect("pattern");
    re.captures(html).map(|c| unescape(&c[1]))
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

pub fn location(response: &Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The `Set-Cookie` header that names `cookie`, if any.
pub fn set_cookie(response: &Response, cookie: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{cookie}=")))
        .map(str::to_owned)
}

impl Visitor {
    pub fn new(app: &TestApp) -> Visitor {
        Self::at(&app.url)
    }

    pub fn at(base: &str) -> Visitor {
        Visitor {
            http: Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .build()
                .expect("client"),
            base: base.to_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .expect("request")
    }

    /// The CSRF token of the page at `path`.
    pub async fn csrf(&self, path: &str) -> String {
        let page = self.get(path).await.text().await.expect("page");
        field(&page, "csrf").unwrap_or_else(|| panic!("no csrf field on {path}: {page}"))
    }

    /// Submits the login form: the answer to `POST /login`.
    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.login_to(username, password, "/account").await
    }

    pub async fn login_to(&self, username: &str, password: &str, return_to: &str) -> Response {
        let csrf = self.csrf("/login").await;
        self.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", username),
                ("password", password),
                ("return_to", return_to),
            ],
        )
        .await
    }

    /// Submits the second step with `code`, given the first step's page.
    pub async fn code(&self, step_page: &str, code: &str) -> Response {
        let csrf = field(step_page, "csrf").expect("csrf on the code page");
        let pending = field(step_page, "pending").expect("pending on the code page");
        let return_to = field(step_page, "return_to").unwrap_or_default();
        self.post(
            "/login/code",
            &[
                ("csrf", &csrf),
                ("pending", &pending),
                ("code", code),
                ("return_to", &return_to),
            ],
        )
        .await
    }

    /// Whether `/account` shows a signed-in page (else it redirects).
    pub async fn signed_in(&self) -> bool {
        self.get("/account").await.status() == 200
    }

    pub async fn logout(&self) -> Response {
        let csrf = self.csrf("/logout").await;
        self.post("/logout", &[("csrf", &csrf)]).await
    }
}
