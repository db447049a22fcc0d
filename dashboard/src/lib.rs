//! PingPilot's web dashboard, served by the relay itself under `/dashboard`: sign in with an API
//! key, then manage categories, watch events arrive, change settings, keys and see usage.
//! Pages are rendered on the server (maud); forms work without JavaScript, and the vendored htmx
//! adds live updates where a page has them.

mod chart;
mod events_table;
mod layout;
mod pages;
mod range;
mod range_stats;
mod web;

use std::sync::Arc;

use pingpilot_core::api::Mount;
use pingpilot_core::app::AppState;
use pingpilot_core::config::Settings;
use pingpilot_core::model::{AccountId, hash_api_key, new_secret, now_millis};
use pingpilot_core::store::{Store, StoreError};
use poem::http::{HeaderName, HeaderValue, header};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get, handler};

/// Where the dashboard lives on the relay.
pub const PREFIX: &str = "/dashboard";

/// The dashboard's content security policy: the relay's own scripts and styles only, no inline
/// script or style (colours are SVG fills; htmx's injected indicator style is turned off), no
/// framing by any site, forms post only to the relay.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// What every answer under the dashboard carries, error pages, redirects and assets included.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "same-origin"),
];

/// The dashboard's routes, to serve beside the API; `None` when `dashboard.enabled` is false.
pub fn mount(state: Arc<AppState>) -> Option<Mount> {
    if !state.settings.dashboard.enabled {
        return None;
    }
    let mut route = Route::new();
    for (name, body, content_type) in ASSETS {
        route = route.at(
            format!("/assets/{name}"),
            get(poem::endpoint::make_sync(move |_| {
                asset(body, content_type)
            })),
        );
    }
    // Not `/*rest`: poem's tree prefers a catch-all over `/` itself, which hid the overview.
    let route = pages::routes(route)
        .at("/:first", not_found)
        .at("/:first/*rest", not_found);
    Some(Mount {
        prefix: PREFIX,
        secret_paths: &["/login/"],
        endpoint: route
            .data(state)
            .data(Arc::new(range_stats::StatsCache::default()))
            .around(secured)
            .boxed(),
    })
}

/// Adds the security headers to every answer, once for all pages.
async fn secured<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    // An error becomes its page here, so that it carries the headers too.
    let mut response = match next.call(req).await {
        Ok(response) => response.into_response(),
        Err(err) => err.into_response(),
    };
    for (name, value) in SECURITY_HEADERS {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    Ok(response)
}

/// Ends every dashboard session of an account (`pingpilot account sign-out`): how many were
/// open; `None` when there is no such account.
pub async fn sign_out_everywhere(
    store: &Store,
    account_id: &AccountId,
) -> Result<Option<u64>, StoreError> {
    if store.account(account_id).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(
        store
            .delete_account_sessions(account_id, now_millis())
            .await?,
    ))
}

/// Creates a one-time sign-in link for an account (`pingpilot account login-link`); `None` when
/// there is no such account.
pub async fn login_link(
    store: &Store,
    settings: &Settings,
    account_id: &AccountId,
) -> Result<Option<String>, StoreError> {
    if store.account(account_id).await?.is_none() {
        return Ok(None);
    }
    let token = new_secret();
    let now = now_millis();
    let expires_at = web::expires_after(now, settings.dashboard.login_link_ttl.get());
    store
        .create_login_link(&hash_api_key(&token), account_id, now, expires_at)
        .await?;
    let base = settings.dashboard.base_url(settings.server.bind);
    Ok(Some(format!("{base}{PREFIX}/login/{token}")))
}

/// Any other address under the dashboard: its own HTML page, not the API's JSON.
#[handler]
fn not_found() -> web::PageResult {
    Err(web::DashError::NotFound)
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The files under `/dashboard/assets/`, compiled in: name, content, type.
const ASSETS: [(&str, &str, &str); 6] = [
    // htmx 2.0.11 (Zero-Clause BSD), vendored: no JavaScript build step, nothing fetched at
    // run time.
    (
        "htmx.min.js",
        include_str!("../assets/htmx.min.js"),
        JAVASCRIPT,
    ),
    // The new-key page's copy button.
    (
        "copy-key.js",
        include_str!("../assets/copy-key.js"),
        JAVASCRIPT,
    ),
    // Times in the reader's time zone.
    (
        "local-time.js",
        include_str!("../assets/local-time.js"),
        JAVASCRIPT,
    ),
    // Live tables keep their sideways scroll.
    (
        "keep-scroll.js",
        include_str!("../assets/keep-scroll.js"),
        JAVASCRIPT,
    ),
    (
        "dashboard.css",
        include_str!("../assets/dashboard.css"),
        "text/css; charset=utf-8",
    ),
    // The paper plane of the brand, so that browsers ask for no /favicon.ico.
    (
        "favicon.svg",
        include_str!("../assets/favicon.svg"),
        "image/svg+xml",
    ),
];

fn asset(body: &'static str, content_type: &'static str) -> Response {
    body.with_content_type(content_type)
        .with_header(header::CACHE_CONTROL, "public, max-age=3600")
        .into_response()
}
