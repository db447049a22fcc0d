//! Signing in (with an API key, or a one-time link from the operator) and out.

use maud::{Markup, html};
use pingpilot_core::model::{ACCOUNT_DISABLED_MESSAGE, hash_api_key, new_secret, now_millis};
use poem::http::{StatusCode, header};
use poem::web::{Form, Path, Query};
use poem::{IntoResponse, Request, Response, Route, get, handler, post};
use serde::Deserialize;

use crate::PREFIX;
use crate::layout::{self, NoticeKind};
use crate::web::{
    self, ACCOUNT_DISABLED_HELP, CsrfOnly, Done, PageResult, SIGNIN_COOKIE, SignedIn, app_state,
    same_token, see_other,
};

/// How long the sign-in form's own token lives (it only guards that one form).
const SIGNIN_FORM_SECS: u64 = 3600;

pub fn routes(route: Route) -> Route {
    route
        .at("/login", get(sign_in_page).post(sign_in))
        .at("/login/:token", get(link_page).post(sign_in_with_link))
        .at("/logout", post(sign_out))
        .at("/logout/everywhere", post(sign_out_everywhere))
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    csrf: String,
}

/// A page whose form is guarded by a fresh sign-in token: a hidden field and a cookie that must
/// match (there is no session yet to hold a CSRF token).
fn guarded_page(
    req: &Request,
    status: StatusCode,
    title: &str,
    form: impl FnOnce(&str) -> Markup,
) -> Response {
    let state = app_state(req);
    let token = new_secret();
    layout::bare(title, form(&token))
        .with_status(status)
        .with_header(
            header::SET_COOKIE,
            web::set_cookie(
                SIGNIN_COOKIE,
                &token,
                SIGNIN_FORM_SECS,
                web::over_https(req, &state),
            ),
        )
        .into_response()
}

/// Whether a sign-in form came with the token its page set.
fn guarded_form_ok(req: &Request, submitted: &str) -> bool {
    let expected = web::cookie(req, SIGNIN_COOKIE).unwrap_or_default();
    !expected.is_empty() && same_token(submitted, expected)
}

const FORM_EXPIRED: &str = "This sign-in form has expired or your browser did not keep its \
    cookie. The form has been renewed: try again (cookies must be allowed for this site).";

fn sign_in_form(
    req: &Request,
    status: StatusCode,
    problem: Option<&str>,
    done: Option<&str>,
) -> Response {
    guarded_page(req, status, "Sign in", |token| {
        html! {
            h1 { "Sign in" }
            @if let Some(done) = done { (layout::notice(NoticeKind::Done, done)) }
            @if let Some(problem) = problem { (layout::notice(NoticeKind::Problem, problem)) }
            form.card method="post" action={ (PREFIX) "/login" } {
                input type="hidden" name="csrf" value=(token);
                label for="api_key" { "API key" }
                input #api_key type="password" name="api_key" required autocomplete="off"
                    placeholder="pk_…" autofocus;
                p.hint {
                    "The key your apps send events with. An operator can also give you a \
                     one-time link: " code { "pingpilot account login-link --account ID" } "."
                }
                button.primary type="submit" { "Sign in" }
            }
        }
    })
}

/// A one-time link asks before it is used, so that a link preview or prefetch cannot use it up.
fn link_form(req: &Request, link: &str, status: StatusCode, problem: Option<&str>) -> Response {
    guarded_page(req, status, "Sign in with a link", |token| {
        html! {
            h1 { "Sign in with a link" }
            @if let Some(problem) = problem { (layout::notice(NoticeKind::Problem, problem)) }
            form.card method="post" action={ (PREFIX) "/login/" (link) } {
                input type="hidden" name="csrf" value=(token);
                p { "This one-time link signs you in to the PingPilot dashboard. It works once." }
                button.primary type="submit" { "Continue" }
            }
        }
    })
}

#[handler]
fn link_page(req: &Request, Path(link): Path<String>) -> Response {
    link_form(req, &link, StatusCode::OK, None)
}

#[handler]
fn sign_in_page(req: &Request, Query(query): Query<Done>) -> Response {
    let notice = match query.done.as_deref() {
        Some("everywhere") => Some(SIGNED_OUT_EVERYWHERE),
        Some("key-revoked") => Some(KEY_REVOKED),
        _ => None,
    };
    sign_in_form(req, StatusCode::OK, None, notice)
}

const SIGNED_OUT_EVERYWHERE: &str =
    "You are signed out everywhere: every session of the account has ended, this one included.";
const KEY_REVOKED: &str =
    "You are signed out: the API key you signed in with is revoked. Sign in with another key.";

#[handler]
async fn sign_in(req: &Request, Form(form): Form<SignInForm>) -> PageResult {
    if !guarded_form_ok(req, &form.csrf) {
        return Ok(sign_in_form(
            req,
            StatusCode::FORBIDDEN,
            Some(FORM_EXPIRED),
            None,
        ));
    }
    let state = app_state(req);
    let key = form.api_key.trim();
    let found = if key.is_empty() {
        None
    } else {
        state.authenticate_key(key).await?
    };
    let Some(found) = found else {
        return Ok(sign_in_form(
            req,
            StatusCode::UNAUTHORIZED,
            Some(
                "That API key is not valid: it is mistyped, or it was revoked. Keys start with \
                 pk_.",
            ),
            None,
        ));
    };
    if found.account.disabled_at.is_some() {
        return Ok(sign_in_form(
            req,
            StatusCode::FORBIDDEN,
            Some(&format!(
                "{ACCOUNT_DISABLED_MESSAGE}. {ACCOUNT_DISABLED_HELP}"
            )),
            None,
        ));
    }
    // The session keeps the key's id, so that revoking the key ends the session.
    let cookie = web::start_session(req, &state, &found.account.id, Some(&found.key_id)).await?;
    Ok(signed_in(cookie, req, &state))
}

/// Leaves the sign-in form's token behind and goes to the overview.
fn signed_in(
    session_cookie: String,
    req: &Request,
    state: &pingpilot_core::app::AppState,
) -> Response {
    let mut response = see_other(PREFIX);
    let headers = response.headers_mut();
    for cookie in [
        session_cookie,
        web::set_cookie(SIGNIN_COOKIE, "", 0, web::over_https(req, state)),
    ] {
        if let Ok(value) = cookie.parse() {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

#[handler]
async fn sign_in_with_link(
    req: &Request,
    Path(token): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    if !guarded_form_ok(req, &form.csrf) {
        return Ok(link_form(
            req,
            &token,
            StatusCode::FORBIDDEN,
            Some(FORM_EXPIRED),
        ));
    }
    let state = app_state(req);
    let redeemed = state
        .store()
        .redeem_login_link(&hash_api_key(&token), now_millis())
        .await?;
    let Some(account_id) = redeemed else {
        return Ok(sign_in_form(
            req,
            StatusCode::GONE,
            Some(
                "This sign-in link has expired or was used already; each link works once. Ask \
                 for a new one, or sign in with an API key.",
            ),
            None,
        ));
    };
    // No key: no revocation ends this session, only signing out or its expiry.
    let cookie = web::start_session(req, &state, &account_id, None).await?;
    Ok(signed_in(cookie, req, &state))
}

#[handler]
async fn sign_out(req: &Request, user: SignedIn, Form(form): Form<CsrfOnly>) -> PageResult {
    user.check_csrf(&form.csrf)?;
    user.sign_out().await?;
    Ok(web::signed_out(
        req,
        &user.state,
        &format!("{PREFIX}/login"),
    ))
}

/// Ends every session of the account, on every device, this one included.
#[handler]
async fn sign_out_everywhere(
    req: &Request,
    user: SignedIn,
    Form(form): Form<CsrfOnly>,
) -> PageResult {
    user.check_csrf(&form.csrf)?;
    user.sign_out_everywhere().await?;
    Ok(web::signed_out(
        req,
        &user.state,
        &format!("{PREFIX}/login?done=everywhere"),
    ))
}
