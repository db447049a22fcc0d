//! The dashboard over real HTTP: a cookie-keeping client that signs in through the form and
//! sends forms with the page's CSRF token, as a browser would.

mod activity;
mod attention;
mod category;
mod event;
mod events;
mod headers;
mod keys;
mod overview;
mod sessions;
mod settings;
mod signin;
mod usage;

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use crate::helpers::Relay;

/// One answer of the dashboard.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    /// Where a redirect points.
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// Fails with the page's text unless it contains every one of `parts`.
    #[track_caller]
    pub fn assert_contains(&self, parts: &[&str]) {
        for part in parts {
            assert!(
                self.body.contains(part),
                "expected {part:?} in the page ({}):\n{}",
                self.status,
                self.body
            );
        }
    }
}

/// A browser on the dashboard: keeps cookies, follows no redirects by itself, and remembers
/// the CSRF token of the last page that had a form.
pub struct Browser<'r> {
    relay: &'r Relay,
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
    pub csrf: Option<String>,
}

impl<'r> Browser<'r> {
    pub fn new(relay: &'r Relay) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            relay,
            client,
            cookies: BTreeMap::new(),
            csrf: None,
        }
    }

    /// A browser signed in with `key` through the sign-in form.
    pub async fn signed_in(relay: &'r Relay, key: &str) -> Self {
        let mut browser = Self::new(relay);
        let form = browser.get("/dashboard/login").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let done = browser.post("/dashboard/login", &[("api_key", key)]).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        assert_eq!(done.location.as_deref(), Some("/dashboard"));
        assert!(browser.cookie("pp_session").is_some(), "no session cookie");
        browser
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.into(), value.into());
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.relay.base));
        self.send(request).await
    }

    /// Sends a form with the current CSRF token added (unless `fields` has one).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        let token = self.csrf.clone().unwrap_or_default();
        if !fields.iter().any(|(name, _)| *name == "csrf") {
            form.push(("csrf", &token));
        }
        let request = self
            .client
            .post(format!("{}{path}", self.relay.base))
            .form(&form);
        self.send(request).await
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let cookie_header: Vec<String> = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let request = if cookie_header.is_empty() {
            request
        } else {
            request.header(reqwest::header::COOKIE, cookie_header.join("; "))
        };
        let response = request.send().await.expect("dashboard answers");
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        for line in &set_cookies {
            self.keep_cookie(line);
        }
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        // The content security policy runs no inline script or style, so no page may hold one
        // (text is escaped, so these appear only as markup).
        assert!(
            !body.contains(" style=\"") && !body.contains("<script>"),
            "inline style or script, which the content security policy blocks:\n{body}"
        );
        if let Some(token) = csrf_in(&body) {
            self.csrf = Some(token);
        }
        Page {
            status,
            location,
            set_cookies,
            headers,
            body,
        }
    }

    fn keep_cookie(&mut self, line: &str) {
        let Some((name, rest)) = line.split_once('=') else {
            return;
        };
        let value = rest.split(';').next().unwrap_or_default();
        if value.is_empty() || line.contains("Max-Age=0") {
            self.cookies.remove(name);
        } else {
            self.cookies.insert(name.to_string(), value.to_string());
        }
    }
}

/// The value of the first hidden `csrf` field of a page.
pub fn csrf_in(body: &str) -> Option<String> {
    let marker = r#"name="csrf" value=""#;
    let start = body.find(marker)? + marker.len();
    let end = body[start..].find('"')?;
    Some(body[start..start + end].to_string())
}
