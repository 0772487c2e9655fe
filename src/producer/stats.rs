//! `accepted` for asynchronous writes, counted without a Durable Object on
//! the request path.
//!
//! Each isolate is a stats *source* with a random name and a cumulative
//! count. After a request is answered, at most one push per isolate is in
//! flight (`wait_until`); increments that arrive meanwhile ride on the next
//! push of the same loop, so a burst of N uploads costs far fewer than N
//! shard calls and the count is still exact (see `objects::stats_shard`).

use std::cell::RefCell;

use worker::{Context, Env};

use crate::http::{hex, random_bytes};
use crate::objects::stats_shard::{self, Push, Totals};

#[derive(Default)]
struct SourceState {
    name: String,
    accepted: i64,
    pushing: bool,
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
        !std::mem::replace(&mut s.pushing, true)
    });
    if !start {
        return;
    }
    let env = env.clone();
    ctx.wait_until(async move {
        loop {
            let (source, accepted) = SOURCE.with(|s| {
                let s = s.borrow();
                (s.name.clone(), s.accepted)
            });
            let push = Push {
                source,
                version: accepted,
                totals: Totals {
                    accepted,
                    ..Totals::default()
                },
            };
            let ok = stats_shard::push(&env, &push).await.is_ok();
            let done = SOURCE.with(|s| {
                let mut s = s.borrow_mut();
                if !ok || s.accepted == accepted {
                    s.pushing = false;
                    true
                } else {
                    false
                }
            });
            if done {
                break;
            }
        }
    });
}
