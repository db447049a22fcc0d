//! One module per page (or group of forms); each adds its routes.

mod activity;
mod category;
mod event;
mod events;
mod keys;
mod overview;
mod settings;
mod signin;
mod theme;
mod usage;

use poem::Route;

pub fn routes(route: Route) -> Route {
    let route = signin::routes(route);
    let route = overview::routes(route);
    let route = category::routes(route);
    let route = event::routes(route);
    let route = events::routes(route);
    let route = settings::routes(route);
    let route = keys::routes(route);
    let route = activity::routes(route);
    let route = theme::routes(route);
    usage::routes(route)
}
