//! Every answer under /dashboard carries the security headers: pages, redirects, error pages,
//! assets and its 404s.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use super::Browser;
use crate::helpers::Relay;

const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
];

#[track_caller]
fn assert_secured(what: &str, status: StatusCode, expected: StatusCode, headers: &HeaderMap) {
    assert_eq!(status, expected, "{what}");
    for (name, value) in SECURITY_HEADERS {
        let found: Vec<_> = headers.get_all(name).iter().collect();
        assert_eq!(found, [value], "{what}: {name}");
    }
}

#[tokio::test]
async fn every_dashboard_answer_carries_the_security_headers() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;

    let mut away = Browser::new(&relay);
    let redirect = away.get("/dashboard").await;
    assert_secured(
        "redirect",
        redirect.status,
        StatusCode::SEE_OTHER,
        &redirect.headers,
    );
    let sign_in = away.get("/dashboard/login").await;
    assert_secured(
        "sign-in page",
        sign_in.status,
        StatusCode::OK,
        &sign_in.headers,
    );
    let refused = away
        .post("/dashboard/login", &[("api_key", "pk_not_a_real_key")])
        .await;
    assert_secured(
        "refused sign-in",
        refused.status,
        StatusCode::UNAUTHORIZED,
        &refused.headers,
    );

    let mut browser = Browser::signed_in(&relay, &key).await;
    let keys = browser.get("/dashboard/keys").await;
    assert_secured("signed-in page", keys.status, StatusCode::OK, &keys.headers);
    let expired = browser
        .post("/dashboard/logout", &[("csrf", "forged")])
        .await;
    assert_secured(
        "error page",
        expired.status,
        StatusCode::FORBIDDEN,
        &expired.headers,
    );
    let missing = browser.get("/dashboard/no/such/page").await;
    assert_secured(
        "404",
        missing.status,
        StatusCode::NOT_FOUND,
        &missing.headers,
    );
    let foreign = browser.get("/dashboard/keys/key_nope/revoke").await;
    assert_secured(
        "404 of a signed-in page",
        foreign.status,
        StatusCode::NOT_FOUND,
        &foreign.headers,
    );

    for asset in ["htmx.min.js", "copy-key.js", "dashboard.css"] {
        let response = relay
            .request(Method::GET, &format!("/dashboard/assets/{asset}"))
            .send()
            .await
            .expect("answer");
        assert_secured(asset, response.status(), StatusCode::OK, response.headers());
    }
    let wrong_method = relay
        .request(Method::PUT, "/dashboard/keys")
        .send()
        .await
        .expect("answer");
    assert_secured(
        "wrong method",
        wrong_method.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        wrong_method.headers(),
    );
    relay.stop().await;
}
