//! `accepted` for asynchronous writes, counted without a Durable Object on
//! the request path.
//!
//! Each isolate is a stats *source* with a random name and a cumulative
//! count. After a request is answered, one push loop per isolate runs in
//! `wait_until`: it pushes the current count, waits [`PUSH_INTERVAL_MS`],
//! and pushes again while the count moved. A burst of N uploads costs a few
//! shard calls per second instead of N, and the count stays exact (pushes
//! carry cumulative totals, see `objects::stats_shard`). `GET /stats`
//! flushes its own isolate's count first, so a client that reads its stats
//! after its uploads sees them; other isolates' counts land within the
//! interval.
//!
//! The loop records a heartbeat each time it runs rather than a "running"
//! flag it would clear at its end: the runtime may cancel a `wait_until`
//! future, and a request that finds a stale heartbeat starts a new loop
//! (the decisions are [`PushLoop`]'s).

use std::cell::RefCell;
use std::time::Duration;

use pipeline_core::stats_push::{PushLoop, PUSH_INTERVAL_MS};
use worker::{Context, Delay, Env};

use crate::http::{hex, now_ms, random_bytes};
use crate::objects::stats_shard::{self, Push, Totals};

#[derive(Default)]
struct SourceState {
    name: String,
    accepted: i64,
    pushed: i64,
    pusher: PushLoop,
}

thread_local! {
    static SOURCE: RefCell<SourceState> = RefCell::new(SourceState::default());
}

/// Counts one accepted write and makes sure a push will carry it.
pub fn record_accepted(env: &Env, ctx: &Context) {
    let start = SOURCE.with(|s| {
        let mut s = s.borrow_mut();
        if s.name.is_empty() {
            s.name = format!(
                "producer:{}",
                random_bytes::<12>().map(|b| hex(&b)).unwrap_or_default()
            );
        }
        s.accepted += 1;
        s.pusher.on_count(now_ms())
    });
    let Some(generation) = start else {
        return;
    };
    let env = env.clone();
    ctx.wait_until(async move {
        loop {
            // A newer loop took over (this one was slow): stop.
            if !SOURCE.with(|s| s.borrow_mut().pusher.beat(generation, now_ms())) {
                return;
            }
            if !push_once(&env).await {
                break;
            }
            Delay::from(Duration::from_millis(PUSH_INTERVAL_MS.unsigned_abs())).await;
        }
        SOURCE.with(|s| s.borrow_mut().pusher.end(generation));
    });
}

/// Pushes this isolate's count if it moved since the last push. Returns
/// whether a push was made and succeeded (the loop goes on only then).
async fn push_once(env: &Env) -> bool {
    let (source, accepted, pushed) = SOURCE.with(|s| {
        let s = s.borrow();
        (s.name.clone(), s.accepted, s.pushed)
    });
    if source.is_empty() || accepted == pushed {
        return false;
    }
    let push = Push {
        source,
        version: accepted,
        totals: Totals {
            accepted,
            ..Totals::default()
        },
    };
    if stats_shard::push(env, &push).await.is_err() {
        return false;
    }
    SOURCE.with(|s| {
        let mut s = s.borrow_mut();
        s.pushed = s.pushed.max(accepted);
    });
    true
}

/// Pushes this isolate's pending count now (before `/stats` is read).
pub async fn flush(env: &Env) {
    push_once(env).await;
}
