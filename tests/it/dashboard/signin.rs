//! Signing in with an API key or an operator's one-time link, sessions, signing out.

use std::time::Duration;

use reqwest::StatusCode;

use super::Browser;
use crate::helpers::Relay;

#[tokio::test]
async fn a_key_signs_in_and_the_session_cookie_is_locked_down() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let mut browser = Browser::new(&relay);

    let away = browser.get("/dashboard").await;
    assert_eq!(away.status, StatusCode::SEE_OTHER);
    assert_eq!(away.location.as_deref(), Some("/dashboard/login"));

    let form = browser.get("/dashboard/login").await;
    assert_eq!(form.status, StatusCode::OK);
    form.assert_contains(&[r#"<label for="api_key">API key</label>"#, "Sign in"]);

    let wrong = browser
        .post("/dashboard/login", &[("api_key", "pk_not_a_real_key")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    wrong.assert_contains(&["That API key is not valid"]);
    assert!(browser.cookie("pp_session").is_none());

    let done = browser.post("/dashboard/login", &[("api_key", &key)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("/dashboard"));
    let session = done
        .set_cookies
        .iter()
        .find(|c| c.starts_with("pp_session="))
        .expect("a session cookie");
    for part in [
        "Path=/dashboard",
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=43200",
    ] {
        assert!(session.contains(part), "{session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");

    let overview = browser.get("/dashboard").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    overview.assert_contains(&["Test User", "Sign out"]);
    relay.stop().await;
}

#[tokio::test]
async fn the_sign_in_form_needs_its_own_token() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let mut browser = Browser::new(&relay);
    browser.get("/dashboard/login").await;
    let forged = browser
        .post("/dashboard/login", &[("api_key", &key), ("csrf", "forged")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    forged.assert_contains(&["This sign-in form has expired"]);
    assert!(browser.cookie("pp_session").is_none());

    // A post from a page that never showed the form (no cookie) is refused the same way.
    let mut stranger = Browser::new(&relay);
    let blind = stranger
        .post("/dashboard/login", &[("api_key", &key), ("csrf", "x")])
        .await;
    assert_eq!(blind.status, StatusCode::FORBIDDEN);
    relay.stop().await;
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    browser.get("/dashboard").await;
    let session = browser.cookie("pp_session").expect("session").to_string();

    let forged = browser
        .post("/dashboard/logout", &[("csrf", "forged")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    forged.assert_contains(&["This form has expired"]);
    assert_eq!(browser.get("/dashboard").await.status, StatusCode::OK);

    let out = browser.post("/dashboard/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location.as_deref(), Some("/dashboard/login"));
    assert!(browser.cookie("pp_session").is_none(), "cookie cleared");

    // The old cookie value is worthless now.
    browser.set_cookie("pp_session", &session);
    let again = browser.get("/dashboard").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location.as_deref(), Some("/dashboard/login"));
    relay.stop().await;
}

#[tokio::test]
async fn sessions_expire() {
    let relay = Relay::start_with("[dashboard]\nsession_ttl = \"1s\"\n", true).await;
    let key = relay.ready_account().await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    assert_eq!(browser.get("/dashboard").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = browser.get("/dashboard").await;
    assert_eq!(expired.status, StatusCode::SEE_OTHER);
    assert_eq!(expired.location.as_deref(), Some("/dashboard/login"));
    relay.stop().await;
}

#[tokio::test]
async fn an_operator_link_signs_in_once() {
    let relay = Relay::start().await;
    let (account, _) = relay.create_account(&[]).await;
    let output = relay
        .cli(&["account", "login-link", "--account", &account])
        .await;
    assert!(output.status.success(), "{output:?}");
    let url = String::from_utf8(output.stdout).expect("text");
    let url = url.trim();
    assert!(
        url.starts_with("http://127.0.0.1:8080/dashboard/login/"),
        "{url}"
    );
    let path = &url["http://127.0.0.1:8080".len()..];

    // Opening the link only asks; a post without the page's token uses nothing up.
    let mut browser = Browser::new(&relay);
    let ask = browser.get(path).await;
    assert_eq!(ask.status, StatusCode::OK);
    ask.assert_contains(&["Sign in with a link", "Continue"]);
    assert!(browser.cookie("pp_session").is_none());
    let mut forger = Browser::new(&relay);
    let forged = forger.post(path, &[("csrf", "forged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let first = browser.post(path, &[]).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    assert_eq!(first.location.as_deref(), Some("/dashboard"));
    assert_eq!(browser.get("/dashboard").await.status, StatusCode::OK);

    let mut other = Browser::new(&relay);
    other.get(path).await;
    let second = other.post(path, &[]).await;
    assert_eq!(second.status, StatusCode::GONE);
    second.assert_contains(&["expired or was used already"]);
    assert!(other.cookie("pp_session").is_none());

    let unknown = relay
        .cli(&["account", "login-link", "--account", "acc_nope"])
        .await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no account"));
    relay.stop().await;
}

#[tokio::test]
async fn cookies_are_secure_behind_https() {
    let relay = Relay::start().await;
    let response = relay
        .client
        .get(format!("{}/dashboard/login", relay.base))
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .expect("answer");
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("the form's cookie")
        .to_string();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    relay.stop().await;
}

#[tokio::test]
async fn assets_and_unknown_pages() {
    let relay = Relay::start().await;
    let htmx = relay
        .client
        .get(format!("{}/dashboard/assets/htmx.min.js", relay.base))
        .send()
        .await
        .expect("answer");
    assert_eq!(htmx.status(), StatusCode::OK);
    assert_eq!(
        htmx.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(htmx.text().await.expect("text").contains("htmx"));

    let mut browser = Browser::new(&relay);
    let missing = browser.get("/dashboard/no/such/page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    missing.assert_contains(&["<!DOCTYPE html>", "Not found"]);
    relay.stop().await;
}

#[tokio::test]
async fn a_disabled_account_cannot_sign_in_and_its_open_sessions_say_why() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let (_, account) = relay
        .call(reqwest::Method::GET, "/api/v1/account", Some(&key), None)
        .await;
    let account = account["id"].as_str().expect("id").to_string();
    let mut open = Browser::signed_in(&relay, &key).await;
    let disabled = relay
        .cli(&["account", "disable", "--account", &account])
        .await;
    assert!(disabled.status.success());

    let page = open.get("/dashboard").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    page.assert_contains(&["This account is disabled", "Nothing has been deleted"]);
    let mut fresh = Browser::new(&relay);
    fresh.get("/dashboard/login").await;
    let refused = fresh.post("/dashboard/login", &[("api_key", &key)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    refused.assert_contains(&["This account is disabled"]);
    assert!(fresh.cookie("pp_session").is_none());
    let link = relay
        .cli(&["account", "login-link", "--account", &account])
        .await;
    assert!(!link.status.success());
    assert!(String::from_utf8_lossy(&link.stderr).contains("is disabled"));

    let enabled = relay
        .cli(&["account", "enable", "--account", &account])
        .await;
    assert!(enabled.status.success());
    assert_eq!(open.get("/dashboard").await.status, StatusCode::OK);
    relay.stop().await;
}
