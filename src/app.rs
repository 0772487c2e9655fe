//! The per-request view of the deployment: settings, secrets and bindings,
//! with typed errors instead of runtime ones.

use pipeline_core::auth::check_bearer;
use pipeline_core::config::Settings;
use pipeline_core::error::ApiError;
use pipeline_core::id::IdSealer;
use pipeline_core::protocol::bindings;
use pipeline_core::queues::upload_binding;
use worker::{Bucket, Env, Queue, Request};

use crate::http::internal;
use crate::objects::stub::ObjectStub;

/// Bindings and settings of this deployment.
pub struct App {
    pub env: Env,
    pub settings: Settings,
}

impl App {
    /// Reads the settings from the env vars.
    ///
    /// # Errors
    /// [`ApiError::Internal`] for a var that is set but invalid.
    pub fn new(env: Env) -> Result<Self, ApiError> {
        let settings = Settings::from_vars(|k| env.var(k).ok().map(|v| v.to_string()))?;
        crate::http::set_log_level(settings.log_level);
        Ok(Self { env, settings })
    }

    /// A secret (or, under `wrangler dev --var`, a plain var) by name.
    pub fn secret(&self, name: &str) -> Option<String> {
        self.env
            .secret(name)
            .ok()
            .map(|s| s.to_string())
            .or_else(|| self.env.var(name).ok().map(|v| v.to_string()))
            .filter(|s| !s.is_empty())
    }

    /// A plain var by name, when set and not empty.
    pub fn var(&self, name: &str) -> Option<String> {
        self.env
            .var(name)
            .ok()
            .map(|v| v.to_string())
            .filter(|s| !s.trim().is_empty())
    }

    /// The origins webhooks may go to (`WEBHOOK_ALLOWED_ORIGINS`).
    pub fn allowed_callbacks(&self) -> pipeline_core::webhook::AllowedCallbacks {
        pipeline_core::webhook::AllowedCallbacks::parse(
            self.var("WEBHOOK_ALLOWED_ORIGINS").as_deref(),
        )
    }

    /// The bearer check for requests that change state.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`], also when no `API_TOKEN` is configured.
    pub fn require_token(&self, req: &Request) -> Result<(), ApiError> {
        let header = req.headers().get("Authorization").ok().flatten();
        check_bearer(header.as_deref(), self.secret("API_TOKEN").as_deref())
    }

    /// The check for `GET /metrics`: `API_TOKEN`, or `METRICS_TOKEN` when
    /// that is set (a scraper can then hold a token that cannot write).
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] for a missing or wrong token.
    pub fn require_metrics(&self, req: &Request) -> Result<(), ApiError> {
        let header = req.headers().get("Authorization").ok().flatten();
        match self.secret("METRICS_TOKEN") {
            Some(m) if check_bearer(header.as_deref(), Some(&m)).is_ok() => Ok(()),
            _ => check_bearer(header.as_deref(), self.secret("API_TOKEN").as_deref()),
        }
    }

    /// The check for reads: none unless `PUBLIC_READS` is `"false"`.
    ///
    /// # Errors
    /// As [`App::require_token`] when reads are private.
    pub fn require_read(&self, req: &Request) -> Result<(), ApiError> {
        if self.settings.public_reads {
            Ok(())
        } else {
            self.require_token(req)
        }
    }

    /// Seals and opens upload ids. The key comes from `ID_SECRET`, or from
    /// `API_TOKEN` when that is not set (rotating it then voids open ids).
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] when neither secret is configured.
    pub fn sealer(&self) -> Result<IdSealer, ApiError> {
        self.secret("ID_SECRET")
            .or_else(|| self.secret("API_TOKEN"))
            .map(|s| IdSealer::new(s.as_bytes()))
            .ok_or_else(|| ApiError::Unauthorized("no API_TOKEN configured".into()))
    }

    /// The R2 bucket.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the binding is missing.
    pub fn bucket(&self) -> Result<Bucket, ApiError> {
        self.env
            .bucket(bindings::BUCKET)
            .map_err(|e| internal("BUCKET binding", e))
    }

    /// Upload queue `shard` (binding `UPLOADS`, `UPLOADS_1`, …), after
    /// checking that all `UPLOAD_QUEUES` bindings exist: a deployment that
    /// names more queues than it binds fails every write with a message
    /// saying which binding is missing, rather than only the writes whose
    /// keys map to it (and never by sending them to another queue).
    ///
    /// # Errors
    /// [`ApiError::Internal`] for a missing binding or a shard out of range.
    pub fn upload_queue(&self, shard: u32) -> Result<Queue, ApiError> {
        let queues = self.settings.upload_queues;
        if shard >= queues {
            return Err(ApiError::Internal(format!(
                "upload queue {shard} asked for, but UPLOAD_QUEUES is {queues}"
            )));
        }
        let mut wanted = None;
        for i in 0..queues {
            let name = upload_binding(i);
            let queue = self.env.queue(&name).map_err(|_| {
                ApiError::Internal(format!(
                    "UPLOAD_QUEUES is {queues} but the queue binding {name} is missing: \
                     add its [[queues.producers]] (and consumer) to wrangler.toml or lower UPLOAD_QUEUES"
                ))
            })?;
            if i == shard {
                wanted = Some(queue);
            }
        }
        wanted.ok_or_else(|| ApiError::Internal("no upload queue binding".into()))
    }

    /// The scheduler of an object key.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the binding is missing.
    pub fn scheduler(&self, key: &str) -> Result<ObjectStub, ApiError> {
        ObjectStub::scheduler(&self.env, key)
    }

    /// The object of a counter name.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the binding is missing.
    pub fn counter(&self, name: &str) -> Result<ObjectStub, ApiError> {
        ObjectStub::counter(&self.env, name)
    }
}
