//! The staging sweep: deletes staged bodies older than the seen-id window
//! (`SEEN_IDS_TTL_SECONDS`), run by the Worker's cron trigger
//! (`[triggers]` in wrangler.toml).
//!
//! Every write that uses a staged body deletes it when it ends; this finds
//! the rest: bodies whose producer died between staging and sending, and
//! deletions that failed. A body older than that window cannot be needed
//! (no message arrives that late: the window outlasts the queues' message
//! retention), which `pipeline_core::message::staged_orphan` decides. An R2 lifecycle rule on `_pipeline/staging/` (expire after a
//! few days longer than the queue's retention) is a second net; see the
//! README.

use pipeline_core::error::ApiError;
use pipeline_core::message::{staged_orphan, STAGING_PREFIX};
use serde::Serialize;

use crate::app::App;
use crate::http::{internal, log, now_ms};

/// Most staged bodies looked at in one run (list pages of 1000).
const MAX_LISTED_PER_RUN: usize = 10_000;

/// What one sweep did.
#[derive(Debug, Default, Serialize)]
pub struct Swept {
    pub listed: usize,
    pub deleted: usize,
}

/// Deletes staged bodies uploaded more than `older_than_ms` ago.
///
/// # Errors
/// [`ApiError::Internal`] when R2 cannot be listed or deleted from.
pub async fn sweep(app: &App, older_than_ms: i64) -> Result<Swept, ApiError> {
    let bucket = app.bucket()?;
    let now = now_ms();
    let mut out = Swept::default();
    let mut cursor: Option<String> = None;
    loop {
        let mut list = bucket.list().prefix(STAGING_PREFIX).limit(1000);
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list
            .execute()
            .await
            .map_err(|e| internal("listing staged bodies", e))?;
        let old: Vec<String> = page
            .objects()
            .iter()
            .filter(|o| staged_orphan(o.uploaded().as_millis() as i64, now, older_than_ms))
            .map(|o| o.key())
            .collect();
        out.listed += page.objects().len();
        if !old.is_empty() {
            out.deleted += old.len();
            bucket
                .delete_multiple(old)
                .await
                .map_err(|e| internal("deleting staged bodies", e))?;
        }
        cursor = page.cursor().filter(|_| page.truncated());
        if cursor.is_none() || out.listed >= MAX_LISTED_PER_RUN {
            break;
        }
    }
    log(
        serde_json::json!({"level": "info", "at": "sweep", "listed": out.listed, "deleted": out.deleted}),
    );
    Ok(out)
}
