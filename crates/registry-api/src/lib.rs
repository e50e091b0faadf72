//! berth's registry HTTP surface: the OCI distribution API under `/v2`
//! behind its access [`guard`], the token service (`/service/token`) and
//! the health probes (`/healthz`, `/readyz`), and the route by which the
//! nodes of a cluster read each other's proxy fetches ([`peer`]). Handlers parse a request
//! into a typed endpoint, call the registry domain once, and turn the
//! result (or an `ApiError`) into a response. No domain logic lives here.
//!
//! Layout: `v2::request` parses a `/v2` request once (`v2::route` turns its
//! path into an `Endpoint`); the guard decides access on that parse and
//! hands it to `v2::dispatch`; `v2::*` handle each endpoint family.

pub mod guard;
pub mod health;
pub mod peer;
pub mod token;
pub mod v2;

use axum::routing::get;
use axum::Router;
use berth_http::AppState;

/// The routes of this surface, for the binary to merge with the others.
pub fn routes(state: AppState) -> Router<AppState> {
    let v2 = Router::new()
        .route("/v2", axum::routing::any(v2::dispatch))
        .route("/v2/", axum::routing::any(v2::dispatch))
        .route("/v2/{*rest}", axum::routing::any(v2::dispatch))
        .layer(axum::middleware::from_fn_with_state(state, guard::guard));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/service/token", get(token::get).post(token::post))
        .route("/internal/v1/proxy/fetches/{digest}", get(peer::fetch))
        .merge(v2)
}
