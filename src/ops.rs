//! `GET /ops`: the operations page, served from the Worker's static assets
//! (binding `ASSETS`, wrangler.toml `[assets]`).
//!
//! wrangler.toml sets `run_worker_first`, so every request reaches the
//! Worker and only this route asks the assets: the page's answers go
//! through the same `finish` as every other (X-Request-Id, CORS) and a
//! path that names no file gets the API's `404`. The page itself is
//! public: it holds no data and fetches nothing before the user gives it
//! the token.

use pipeline_core::ops_page::{asset_path, SECURITY_HEADERS};
use worker::{Env, Headers, Method, Request, RequestInit};

use crate::http::{self, internal, ApiResult};

/// The binding of the static assets.
const ASSETS: &str = "ASSETS";

/// Request headers handed on to the assets: the conditional ones, so an
/// unchanged file is a `304`. The token is never handed on.
const FORWARDED: [&str; 2] = ["If-None-Match", "If-Modified-Since"];

/// Serves one file of the page, or `None` when `path` names none (the
/// caller answers `404`). `GET` and `HEAD` only (the caller checks).
pub async fn serve(env: &Env, req: &Request, method: Method) -> Option<ApiResult> {
    let asset = asset_path(&req.path())?;
    Some(fetch_asset(env, req, method, &asset).await)
}

async fn fetch_asset(env: &Env, req: &Request, method: Method, asset: &str) -> ApiResult {
    let assets = env
        .assets(ASSETS)
        .map_err(|e| internal("the ASSETS binding", e))?;
    let mut url = req.url().map_err(|e| internal("request URL", e))?;
    url.set_path(asset);
    url.set_query(None);
    let headers = Headers::new();
    for name in FORWARDED {
        if let Ok(Some(value)) = req.headers().get(name) {
            http::set(&headers, name, &value)?;
        }
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    let resp = assets
        .fetch(url.to_string(), Some(init))
        .await
        .map_err(|e| internal("fetching an asset", e))?;
    if resp.status_code() == 404 {
        return Err(pipeline_core::error::ApiError::NotFound(
            "no such file of the operations page".into(),
        ));
    }
    // A fetched answer's headers are immutable: answer with a copy.
    let resp = http::with_own_headers(resp);
    for (name, value) in SECURITY_HEADERS {
        http::set(resp.headers(), name, value)?;
    }
    Ok(resp)
}
