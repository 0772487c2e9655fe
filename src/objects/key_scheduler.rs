//! `KeyScheduler`: one Durable Object per object key, the only writer of
//! that key in R2.
//!
//! Every decision is `pipeline_core::engine`'s: admitting and superseding
//! writes, committing at most once a second, retries, recovery after a
//! crash, sync writes, idempotency, statuses. This object only hands the
//! engine its host ([`SchedulerHost`]: SQLite in `scheduler_store`, R2, the
//! clock, the alarm and the stats shards in `scheduler_io`) and dispatches
//! the calls of `pipeline_core::protocol` to it.

use pipeline_core::config::Settings;
use pipeline_core::engine::{AlarmKnown, Clock, EngineConfig, Memory, Scheduler};
use pipeline_core::error::ApiError;
use pipeline_core::protocol::{
    bindings, Ack, Call, CallbackReport, ClaimReply, ClaimRequest, EnqueueRequest, FailRequest,
    InspectRequest, LatestReply, LatestRequest, StatusRequest, SyncRequest,
};
use serde_json::json;
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::scheduler_io::SchedulerHost;
use super::{respond, scheduler_store, serve};
use crate::http::log;

/// How soon a failed alarm run is tried again.
const ALARM_RETRY_MS: i64 = 1000;

#[durable_object]
pub struct KeyScheduler {
    host: SchedulerHost,
    mem: Memory,
    cfg: EngineConfig,
}

impl DurableObject for KeyScheduler {
    fn new(state: State, env: Env) -> Self {
        #[cfg(feature = "test-routes")]
        let env = crate::billing::wrap_env(env);
        let settings = Settings::from_vars(|k| env.var(k).ok().map(|v| v.to_string()));
        let settings = settings.unwrap_or_else(|e| {
            // Requests fail loudly on the same var (the Worker refuses them
            // with 500); the scheduler keeps committing what it holds.
            log(json!({"level": "error", "at": "scheduler.settings", "error": e.to_string()}));
            Settings::default()
        });
        crate::http::set_log_level(settings.log_level);
        // Commit events are on exactly when the EVENTS queue is bound.
        let events = env.queue(bindings::EVENTS).is_ok();
        let host = SchedulerHost::new(&state, env);
        if let Err(e) = scheduler_store::open(&host.sql, &host.tables) {
            log(json!({"level": "error", "at": "scheduler.schema", "error": e.to_string()}));
        }
        Self {
            host,
            mem: Memory::default(),
            cfg: EngineConfig {
                status_ttl_ms: settings.status_ttl_ms,
                seen_ids_ttl_ms: settings.seen_ids_ttl_ms,
                events,
                ..EngineConfig::default()
            },
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let s = self.engine();
        let path = req.path();
        let req = &mut req;
        let result = match path.as_str() {
            EnqueueRequest::PATH => serve(req, |c| s.enqueue(c)).await,
            StatusRequest::PATH => serve(req, |c| s.status(c)).await,
            FailRequest::PATH => serve(req, |c| s.fail(c)).await,
            SyncRequest::PATH => serve(req, |c| s.sync_write(c)).await,
            ClaimRequest::PATH => {
                serve(req, |c: ClaimRequest| async move {
                    let holder = s.claim(&c.idempotency_key, &c.id)?;
                    Ok(ClaimReply { holder })
                })
                .await
            }
            InspectRequest::PATH => {
                serve(req, |c: InspectRequest| async move { s.inspect(&c) }).await
            }
            LatestRequest::PATH => {
                serve(req, |_: LatestRequest| async {
                    Ok(LatestReply {
                        pending: s.latest()?,
                    })
                })
                .await
            }
            CallbackReport::PATH => {
                serve(req, |c: CallbackReport| async move {
                    s.callback_report(&c)?;
                    Ok(Ack { ok: true })
                })
                .await
            }
            #[cfg(feature = "test-routes")]
            p if p.starts_with("/_test/") => self.test_call(p, req).await,
            _ => Err(ApiError::Internal(format!("unknown scheduler call {path}"))),
        };
        respond(result)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        #[cfg(feature = "test-routes")]
        let started = self.host.now_ms();
        // Never Err or panic here: an Err is retried on the runtime's
        // schedule, not ours, and a panic resets the whole Wasm instance.
        if let Err(e) = self.engine().alarm().await {
            log(json!({"level": "error", "at": "scheduler.alarm", "error": e.to_string()}));
            let again = self.host.now_ms() + ALARM_RETRY_MS;
            // Set here, past the engine: what the engine knew of the alarm
            // no longer holds.
            self.mem.alarm.set(AlarmKnown::Unknown);
            if let Err(e) = self.host.set_alarm(again).await {
                log(json!({"level": "error", "at": "scheduler.alarm", "error": e.to_string()}));
            }
        }
        #[cfg(feature = "test-routes")]
        #[allow(clippy::cast_precision_loss)]
        crate::billing::do_alarm((self.host.now_ms() - started) as f64);
        Response::ok("")
    }
}

impl KeyScheduler {
    fn engine(&self) -> Scheduler<'_, SchedulerHost> {
        Scheduler::new(&self.host, &self.mem, self.cfg)
    }

    /// The fault tests' calls (`test-routes` builds only).
    #[cfg(feature = "test-routes")]
    async fn test_call(&self, path: &str, req: &mut Request) -> Result<Response, ApiError> {
        use super::scheduler_io::faults::{arm, FailWrites};
        use super::scheduler_store::probe::{
            legacy_bodies, legacy_superseded, tx_probe, LegacyBodies, LegacySuperseded, TxProbe,
        };
        match path {
            FailWrites::PATH => {
                serve(req, |f: FailWrites| async move { arm(&self.host.sql, &f) }).await
            }
            TxProbe::PATH => serve(req, |p: TxProbe| async move { tx_probe(&self.host, &p) }).await,
            LegacyBodies::PATH => {
                serve(
                    req,
                    |_: LegacyBodies| async move { legacy_bodies(&self.host) },
                )
                .await
            }
            LegacySuperseded::PATH => {
                serve(req, |_: LegacySuperseded| async move {
                    legacy_superseded(&self.host)
                })
                .await
            }
            _ => Err(ApiError::NotFound(format!("no scheduler test call {path}"))),
        }
    }
}
