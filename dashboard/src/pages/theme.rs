//! The header's colour theme switch: auto (the system's), dark or light, kept in a cookie for a
//! year, so that pages are served in it without JavaScript.

use poem::http::header;
use poem::web::Form;
use poem::{IntoResponse, Request, Response, Route, handler, post};

use crate::PREFIX;
use crate::layout::Theme;
use crate::web::{self, PageResult, SignedIn, see_other};

const YEAR_SECS: u64 = 365 * 24 * 3600;

pub fn routes(route: Route) -> Route {
    route.at("/theme", post(choose))
}

#[derive(Debug, Default, serde::Deserialize)]
struct ThemeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    theme: String,
}

/// Keeps the choice and goes back to the page the switch was on.
#[handler]
async fn choose(req: &Request, user: SignedIn, Form(form): Form<ThemeForm>) -> PageResult {
    user.check_csrf(&form.csrf)?;
    let theme = Theme::parse(&form.theme).unwrap_or_default();
    let cookie = web::set_cookie(
        Theme::COOKIE,
        theme.as_str(),
        YEAR_SECS,
        web::over_https(req, &user.state),
    );
    let mut response: Response = see_other(&back_to(req)).into_response();
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The dashboard page the request came from (the path of its `Referer`, on this relay), else
/// the overview.
fn back_to(req: &Request) -> String {
    req.headers()
        .get(header::REFERER)
        .and_then(|value| value.to_str().ok())
        .and_then(referer_path)
        .filter(|path| path.starts_with(PREFIX))
        .unwrap_or(PREFIX)
        .to_string()
}

/// `https://host/dashboard/x?y` → `/dashboard/x?y` (without a fragment).
fn referer_path(referer: &str) -> Option<&str> {
    let after_scheme = &referer[referer.find("://")? + 3..];
    let path = &after_scheme[after_scheme.find('/')?..];
    Some(path.split('#').next().unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::referer_path;

    #[test]
    fn the_way_back_is_a_path_on_this_relay() {
        assert_eq!(
            referer_path("http://127.0.0.1:8080/dashboard/usage?x=1#top"),
            Some("/dashboard/usage?x=1")
        );
        assert_eq!(referer_path("https://evil.example"), None);
        assert_eq!(referer_path("/dashboard"), None);
    }
}
