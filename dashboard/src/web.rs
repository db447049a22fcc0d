//! What every dashboard route shares: the session cookie, the signed-in extractor, CSRF checks,
//! redirects and the error type with its HTML page.

use std::sync::Arc;

use maud::html;
use pingpilot_core::app::AppState;
use pingpilot_core::model::{
    ACCOUNT_DISABLED_MESSAGE, Account, AccountId, KeyId, Millis, hash_api_key, new_secret,
    now_millis,
};
use pingpilot_core::service::health;
use pingpilot_core::store::{SessionRecord, StoreError};
use poem::http::{HeaderValue, StatusCode, header};
use poem::{FromRequest, IntoResponse, Request, RequestBody, Response};

pub use crate::layout::csrf_field;
use crate::layout::{self, Theme};

pub const SESSION_COOKIE: &str = "pp_session";
/// Double-submit token of the sign-in form, which has no session yet.
pub const SIGNIN_COOKIE: &str = "pp_signin";

/// An answer of the dashboard that is not the page asked for.
#[derive(Debug, thiserror::Error)]
pub enum DashError {
    /// No session, or it expired or was signed out: go to the sign-in page.
    #[error("sign-in needed")]
    SignInNeeded,
    /// A form without this session's CSRF token.
    #[error("form token mismatch")]
    Csrf,
    #[error("not found")]
    NotFound,
    /// An operator disabled the account (`pingpilot account disable`).
    #[error("account disabled")]
    AccountDisabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl poem::error::ResponseError for DashError {
    fn status(&self) -> StatusCode {
        match self {
            Self::SignInNeeded => StatusCode::SEE_OTHER,
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::AccountDisabled => StatusCode::FORBIDDEN,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        match self {
            Self::SignInNeeded => see_other(&format!("{}/login", crate::PREFIX)),
            Self::Csrf => error_page(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The page was open for too long or in another session. Go back, reload the page \
                 and try again.",
            ),
            Self::NotFound => error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing at this address, or it belongs to another account.",
            ),
            Self::AccountDisabled => error_page(
                StatusCode::FORBIDDEN,
                ACCOUNT_DISABLED_MESSAGE,
                ACCOUNT_DISABLED_HELP,
            ),
            Self::Store(err) => {
                tracing::error!(error = %err, "storage failure while answering a dashboard page");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The relay could not read or write its database. Try again in a moment; the \
                     relay's log says more.",
                )
            }
        }
    }
}

pub type PageResult<T = Response> = Result<T, DashError>;

/// What a user of a disabled account can do about it.
pub const ACCOUNT_DISABLED_HELP: &str = "Its API keys are refused and its notifications are \
    held until the operator of this relay enables it again. Nothing has been deleted.";

fn error_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! {
        h1 { (title) }
        p { (text) }
        p { a href=(crate::PREFIX) { "Back to the dashboard" } }
    };
    layout::bare(title, body)
        .with_status(status)
        .into_response()
}

/// A 303 to `location`; htmx requests follow `HX-Redirect` with a full page load instead.
pub fn see_other(location: &str) -> Response {
    let mut response = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .finish();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert("HX-Redirect", value);
    }
    response
}

/// A 303 to `location` (a sign-in page) that deletes the session cookie.
pub fn signed_out(req: &Request, state: &AppState, location: &str) -> Response {
    let mut response = see_other(location);
    let cookie = set_cookie(SESSION_COOKIE, "", 0, over_https(req, state));
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The relay's state, which the dashboard's routes carry as request data.
pub fn app_state(req: &Request) -> Arc<AppState> {
    req.data::<Arc<AppState>>()
        .cloned()
        .expect("the dashboard routes are built with the relay state as data")
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether cookies must be `Secure`: the relay is reached over HTTPS (its public URL says so, or
/// the proxy in front of it does).
pub fn over_https(req: &Request, state: &AppState) -> bool {
    let public = state
        .settings
        .dashboard
        .public_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"));
    let forwarded = req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    public || forwarded
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, scoped to the dashboard; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path={}; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}",
        crate::PREFIX
    )
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// When something made at `now` and lasting `ttl` expires (a setting too large for the clock
/// means never, in practice).
pub fn expires_after(now: Millis, ttl: std::time::Duration) -> Millis {
    now.saturating_add(Millis::try_from(ttl.as_millis()).unwrap_or(Millis::MAX))
}

/// Starts a session for `account_id`, signed in with the API key `key_id` (`None`: a one-time
/// link); the cookie to set with it. Revoking that key ends the session.
pub async fn start_session(
    req: &Request,
    state: &AppState,
    account_id: &AccountId,
    key_id: Option<&KeyId>,
) -> Result<String, StoreError> {
    let id = new_secret();
    let now = now_millis();
    let ttl = state.settings.dashboard.session_ttl.get();
    let record = SessionRecord {
        account_id: account_id.clone(),
        csrf_token: new_secret(),
        expires_at: expires_after(now, ttl),
        key_id: key_id.cloned(),
    };
    state
        .store()
        .create_session(&hash_api_key(&id), &record, now)
        .await?;
    Ok(set_cookie(
        SESSION_COOKIE,
        &id,
        ttl.as_secs(),
        over_https(req, state),
    ))
}

/// A request from a signed-in browser: its account and the session's CSRF token.
pub struct SignedIn {
    pub state: Arc<AppState>,
    pub account: Account,
    pub csrf: String,
    /// The API key this session was signed in with (`None`: a one-time link).
    pub key_id: Option<KeyId>,
    session_hash: String,
    /// The colour theme this browser chose.
    theme: Theme,
}

impl SignedIn {
    /// A whole page for this session, under the banner of what needs the owner's action. That
    /// is worked out here, for whole pages only: forms that redirect and the live sections that
    /// poll every few seconds need none of it.
    pub async fn page(
        &self,
        active: Option<layout::Nav>,
        title: &str,
        body: maud::Markup,
    ) -> PageResult<Response> {
        let attention = health::attention(&self.state, &self.account, now_millis()).await?;
        Ok(layout::page(self, &attention, active, title, body))
    }

    /// Refuses a form whose token is not this session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), DashError> {
        if same_token(token, &self.csrf) {
            Ok(())
        } else {
            Err(DashError::Csrf)
        }
    }

    /// Ends this session.
    pub async fn sign_out(&self) -> Result<(), StoreError> {
        self.state.store().delete_session(&self.session_hash).await
    }

    /// Ends every session of the account, this one included; how many there were.
    pub async fn sign_out_everywhere(&self) -> Result<u64, StoreError> {
        self.state
            .store()
            .delete_account_sessions(&self.account.id, now_millis())
            .await
    }
}

impl<'a> FromRequest<'a> for SignedIn {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = app_state(req);
        let Some(id) = cookie(req, SESSION_COOKIE).filter(|id| !id.is_empty()) else {
            return Err(DashError::SignInNeeded.into());
        };
        let session_hash = hash_api_key(id);
        let store = state.store();
        let Some(session) = store
            .session(&session_hash, now_millis())
            .await
            .map_err(DashError::from)?
        else {
            return Err(DashError::SignInNeeded.into());
        };
        let Some(account) = store
            .account(&session.account_id)
            .await
            .map_err(DashError::from)?
        else {
            return Err(DashError::SignInNeeded.into());
        };
        if account.disabled_at.is_some() {
            return Err(DashError::AccountDisabled.into());
        }
        Ok(Self {
            state,
            account,
            csrf: session.csrf_token,
            key_id: session.key_id,
            session_hash,
            theme: cookie(req, Theme::COOKIE)
                .and_then(Theme::parse)
                .unwrap_or_default(),
        })
    }
}

/// A form that carries nothing but its CSRF token (a button).
#[derive(Debug, Default, serde::Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

/// `?done=<code>` after a form went through: the page maps the code to a fixed message.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Done {
    #[serde(default)]
    pub done: Option<String>,
}

impl layout::Viewer for SignedIn {
    fn account_name(&self) -> &str {
        &self.account.name
    }

    fn csrf(&self) -> &str {
        &self.csrf
    }

    fn theme(&self) -> Theme {
        self.theme
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", "a"));
    }

    #[test]
    fn expiry_adds_the_ttl_and_never_overflows() {
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(expires_after(1_000, hour), 3_601_000);
        assert_eq!(expires_after(1_000, std::time::Duration::MAX), Millis::MAX);
    }

    #[test]
    fn cookies_are_scoped_and_locked_down() {
        assert_eq!(
            set_cookie("pp_session", "v", 60, false),
            "pp_session=v; Path=/dashboard; Max-Age=60; HttpOnly; SameSite=Lax"
        );
        assert!(set_cookie("pp_session", "v", 60, true).ends_with("; Secure"));
    }

    #[test]
    fn a_cookie_is_found_among_others() {
        let req = Request::builder()
            .header(header::COOKIE, "a=1; pp_session=xyz; b=2")
            .finish();
        assert_eq!(cookie(&req, "pp_session"), Some("xyz"));
        assert_eq!(cookie(&req, "pp"), None);
    }
}
