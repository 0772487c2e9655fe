//! R2 hot-key write pipeline: a Cloudflare Worker that keeps every object
//! key under R2's one-write-per-second limit.
//!
//! An upload travels: [`producer`] (validate, stamp, enqueue, `202`) →
//! the queue → [`consumer`] (coalesce per key) → [`objects::key_scheduler`]
//! (order, space, commit to R2). The synchronous paths ([`reads`],
//! [`counters`], [`uploads`], `?mode=sync` in [`producer::sync`]) answer in
//! the request. This file holds only the entry points and the routing.

mod app;
#[cfg(feature = "test-routes")]
mod bench;
#[cfg(feature = "test-routes")]
mod billing;
mod consumer;
mod counters;
mod http;
mod objects;
mod ops;
mod producer;
mod reads;
mod stats;
mod sweep;
mod uploads;

use pipeline_core::error::ApiError;
use pipeline_core::id::WriteOp;
use pipeline_core::queues::{queue_role, QueueRole};
use serde_json::json;
use worker::{
    event, Context, Env, MessageBatch, Method, Request, Response, ScheduleContext, ScheduledEvent,
};

use crate::app::App;
use crate::counters::CounterOp;
use crate::http::{log, method_not_allowed, now_ms, ApiResult};
use crate::producer::{Delivery, Mode};

pub use objects::counter::Counter;
pub use objects::key_scheduler::KeyScheduler;
pub use objects::stats_shard::StatsShard;

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    // Test builds count billable operations (the counts route itself aside).
    #[cfg(feature = "test-routes")]
    let env = if req.path() == bench::BILLING_PATH {
        env
    } else {
        billing::worker_request();
        billing::wrap_env(env)
    };
    let started = now_ms();
    let request_id = http::random_bytes::<8>()
        .map(|b| http::hex(&b))
        .unwrap_or_default();
    let method = req.method();
    let path = req.path();
    let origin = req.headers().get("Origin").ok().flatten();
    let app = App::new(env);
    let allowed = app
        .as_ref()
        .map(|a| a.settings.allowed_origins.clone())
        .unwrap_or(pipeline_core::config::AllowedOrigins::Any);
    let result = match app {
        Ok(app) => route(&app, &ctx, req).await,
        Err(e) => Err(e),
    };
    let (resp, code) = match result {
        Ok(r) => (r, None),
        Err(e) => (http::error_response(&e), Some(e.code())),
    };
    let resp = http::finish(resp, &allowed, origin.as_deref(), &request_id);
    log(json!({
        "level": if resp.status_code() >= 500 { "error" } else { "info" },
        "request_id": request_id, "method": method.to_string(), "path": path,
        "status": resp.status_code(), "code": code, "ms": now_ms() - started,
    }));
    Ok(resp)
}

#[event(queue)]
async fn queue(
    batch: MessageBatch<serde_json::Value>,
    env: Env,
    _ctx: Context,
) -> worker::Result<()> {
    #[cfg(feature = "test-routes")]
    let env = {
        billing::batch(&batch);
        billing::wrap_env(env)
    };
    let name = batch.queue();
    // Every upload queue (`…-uploads`, `…-uploads-<n>`: one per
    // UPLOAD_QUEUES shard) goes to the upload consumer; the upload dead
    // letter queue is shared by all of them.
    match queue_role(&name) {
        QueueRole::WebhookDeadLetters => {
            consumer::webhooks::handle_dead_letters(&batch, &env).await;
        }
        QueueRole::Webhooks => consumer::webhooks::handle_batch(&batch, &env).await,
        QueueRole::Events => {
            // The commit-event queue is for downstream Workers: production
            // binds no consumer for it here. A test-routes build consumes it
            // when the e2e harness binds it (`consume_events`) and records the
            // events for `GET /_test/events`.
            #[cfg(feature = "test-routes")]
            bench::record_events(&batch, &env).await;
            // Should this Worker ever be bound as its consumer in production,
            // the batch is logged and acked: never handed to the upload
            // consumer, which would dead-letter the events as poison writes.
            #[cfg(not(feature = "test-routes"))]
            {
                log(json!({
                    "level": "error", "at": "queue", "queue": name,
                    "messages": batch.raw_iter().count(),
                    "error": "this Worker does not consume the commit-event queue; acked",
                }));
                batch.ack_all();
            }
        }
        QueueRole::UploadDeadLetters => consumer::dead_letter::handle_batch(&batch, &env).await,
        QueueRole::Uploads => consumer::handle_batch(&batch, &env).await,
    }
    Ok(())
}

/// The cron trigger (`[triggers]` in wrangler.toml): the staging sweep.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    #[cfg(feature = "test-routes")]
    let env = {
        billing::cron_invocation();
        billing::wrap_env(env)
    };
    match App::new(env) {
        Ok(app) => {
            if let Err(e) = sweep::sweep(&app, app.settings.seen_ids_ttl_ms).await {
                log(json!({"level": "error", "at": "sweep", "error": e.to_string()}));
            }
        }
        Err(e) => log(json!({"level": "error", "at": "sweep", "error": e.to_string()})),
    }
}

/// Routes a request to its handler; the contract's `404`/`405` otherwise.
async fn route(app: &App, ctx: &Context, req: Request) -> ApiResult {
    // worker 0.8.7 turns a method it does not know (PROPFIND, PURGE, …)
    // into GET; read the raw one so such requests get 405, not a GET's
    // answer. TRACE stands for them: no route accepts it.
    let method = match req.inner().method().as_str() {
        "GET" | "HEAD" | "PUT" | "POST" | "DELETE" | "OPTIONS" | "PATCH" => req.method(),
        _ => Method::Trace,
    };
    let path = req.path();
    if method == Method::Options {
        return http::preflight();
    }
    let changes_state = matches!(method, Method::Put | Method::Post | Method::Delete);
    #[cfg(feature = "test-routes")]
    if let Some(r) = bench::route(
        app,
        ctx,
        req.clone().map_err(|e| http::internal("clone", e))?,
        &path,
    )
    .await
    {
        return r;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    match segments.as_slice() {
        ["healthz"] => match method {
            Method::Get | Method::Head => http::json(200, &json!({"ok": true})),
            _ => Err(method_not_allowed("GET, HEAD")),
        },
        ["batch"] => match method {
            Method::Post => {
                app.require_token(&req)?;
                producer::batch::serve(app, ctx, req).await
            }
            _ => Err(method_not_allowed("POST")),
        },
        ["metrics"] => match method {
            Method::Get | Method::Head => {
                app.require_metrics(&req)?;
                stats::metrics(app).await
            }
            _ => Err(method_not_allowed("GET, HEAD")),
        },
        ["stats"] => match method {
            Method::Get | Method::Head => {
                app.require_read(&req)?;
                stats::serve(app, &req).await
            }
            _ => Err(method_not_allowed("GET, HEAD")),
        },
        ["stats", rest] if rest.starts_with("keys/") => match method {
            Method::Get | Method::Head => {
                app.require_read(&req)?;
                let raw_key = rest.trim_start_matches("keys/").to_string();
                stats::serve_key(app, &raw_key).await
            }
            _ => Err(method_not_allowed("GET, HEAD")),
        },
        ["ops"] | ["ops", _] => match method {
            Method::Get | Method::Head => ops::serve(&app.env, &req, method)
                .await
                .unwrap_or_else(|| Err(no_route())),
            _ => Err(method_not_allowed("GET, HEAD")),
        },
        ["objects"] => match method {
            Method::Get | Method::Head => {
                app.require_read(&req)?;
                reads::list(app, &req).await
            }
            _ => Err(method_not_allowed("GET, HEAD")),
        },
        ["objects", raw_key] => {
            let raw_key = raw_key.to_string();
            match method {
                Method::Get | Method::Head => {
                    app.require_read(&req)?;
                    reads::get(app, &req, &raw_key, method == Method::Head).await
                }
                Method::Put | Method::Delete => {
                    app.require_token(&req)?;
                    let op = if method == Method::Put {
                        WriteOp::Put
                    } else {
                        WriteOp::Delete
                    };
                    match producer::parse_mode(&req)? {
                        Mode::Async => {
                            producer::accept(app, ctx, req, &raw_key, op, Delivery::default()).await
                        }
                        Mode::Sync => producer::sync::write(app, req, &raw_key, op).await,
                    }
                }
                _ => Err(method_not_allowed("GET, HEAD, PUT, DELETE")),
            }
        }
        ["uploads", id] if !id.is_empty() && !id.contains('/') => match method {
            Method::Get | Method::Head => {
                app.require_read(&req)?;
                uploads::status(app, &req, id).await
            }
            _ => Err(method_not_allowed("GET, HEAD")),
        },
        ["counters", rest] => {
            let (name, action) = match rest.split_once('/') {
                Some((name, action)) => (name, Some(action)),
                None => (*rest, None),
            };
            let op = match (action, &method) {
                (None, Method::Get | Method::Head) => CounterOp::Read,
                (None, Method::Delete) => CounterOp::Reset,
                (None, _) => return Err(method_not_allowed("GET, HEAD, DELETE")),
                (Some("increment"), Method::Post) => CounterOp::Increment,
                (Some("decrement"), Method::Post) => CounterOp::Decrement,
                (Some("increment" | "decrement"), _) => return Err(method_not_allowed("POST")),
                (Some(_), _) => return Err(no_route()),
            };
            if changes_state {
                app.require_token(&req)?;
            } else {
                app.require_read(&req)?;
            }
            counters::serve(app, req, name, op).await
        }
        _ => Err(no_route()),
    }
}

/// The contract's `404 not_found`; the path is not quoted back.
fn no_route() -> ApiError {
    ApiError::NotFound("no route for this path".into())
}
