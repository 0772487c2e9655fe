//! Counts of the operations Cloudflare bills, for the benchmark's cost
//! scenario. Compiled in only with the `test-routes` feature; a production
//! build has none of it. `GET /_bench/billing` answers the counts, and
//! `?reset=1` sets them back to zero in the same step.
//!
//! What is counted, and where:
//!
//! - Worker requests: every `fetch` invocation (`lib.rs`), except
//!   `/_bench/billing` itself; queue consumer and cron invocations apart.
//! - Durable Object requests: every call a Worker or object makes through
//!   an object stub (`objects/stub.rs`), by binding (`SCHEDULER`,
//!   `COUNTERS`, `STATS`), and every alarm invocation
//!   (`objects/key_scheduler.rs`). The wall time of those calls and alarms
//!   is summed too: a lower bound of the time the objects were active,
//!   which Durable Object duration bills.
//! - SQLite rows read and written: the `rowsRead` / `rowsWritten` of every
//!   cursor the SQL helpers finish (`objects/sql.rs`, and the statements
//!   `objects/scheduler_store.rs` runs itself), as the runtime counts them;
//!   `setAlarm` and `deleteAlarm` calls are counted apart
//!   (`objects/scheduler_io.rs`); the bench prices each as a row written.
//! - R2: the bucket binding is handed out wrapped in a `Proxy` that counts
//!   each method as it is looked up (every lookup is a call in this code):
//!   Class A `put`, `delete`, `list`, `createMultipartUpload`; Class B
//!   `get`, `head`. This Worker makes no multipart uploads or copies.
//! - Queues: sends through a queue binding are counted by binding, in
//!   64 KB units of the message body (a write each); consumer invocations
//!   by queue name. Reads and deletes are derived by the bench, see
//!   [`batch`].
//!
//! The counters are globals of the Wasm instance, so they see everything
//! that runs in this isolate. `isolate` is a random id drawn once per
//! instance: the bench reads it to show which isolate answered, and checks
//! that the objects' SQLite rows show up here (under `wrangler dev` the
//! Worker and its Durable Objects share one isolate; if they did not, the
//! rows would read zero).

use std::cell::RefCell;
use std::collections::BTreeMap;

use js_sys::{Array, Function, Object, Reflect};
use pipeline_core::billing::queue_units;
use serde::Serialize;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Env, MessageBatch};

/// Sends through one queue binding.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sent {
    /// Messages sent.
    pub messages: u64,
    /// Billed writes: one per started 64 KB of each message.
    pub write_ops: u64,
}

/// What one queue's consumer saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Consumed {
    /// Consumer invocations (batches).
    pub batches: u64,
}

/// All counts since the last reset.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Worker `fetch` invocations.
    pub worker_requests: u64,
    /// Queue consumer invocations.
    pub queue_invocations: u64,
    /// Cron invocations.
    pub cron_invocations: u64,
    /// Durable Object requests through stubs, by binding.
    pub do_requests: BTreeMap<String, u64>,
    /// Alarm invocations.
    pub do_alarms: u64,
    /// Summed wall time of those requests and alarms, ms.
    pub do_busy_ms: f64,
    /// SQLite rows read.
    pub sql_rows_read: u64,
    /// SQLite rows written.
    pub sql_rows_written: u64,
    /// SQL statements counted.
    pub sql_statements: u64,
    /// The same by statement (its first 60 characters): `[statements,
    /// rows read, rows written]`, to see where the rows come from.
    pub sql_by_statement: BTreeMap<String, [u64; 3]>,
    /// `setAlarm` calls.
    pub alarm_sets: u64,
    /// `deleteAlarm` calls.
    pub alarm_deletes: u64,
    /// R2 Class A operations by method.
    pub r2_class_a: BTreeMap<String, u64>,
    /// R2 Class B operations by method.
    pub r2_class_b: BTreeMap<String, u64>,
    /// Queue sends by binding.
    pub queue_sent: BTreeMap<String, Sent>,
    /// Queue deliveries by queue name.
    pub queue_consumed: BTreeMap<String, Consumed>,
}

thread_local! {
    static COUNTS: RefCell<Counts> = RefCell::new(Counts::default());
    static ISOLATE: String = crate::http::random_bytes::<8>()
        .map(|b| crate::http::hex(&b))
        .unwrap_or_default();
}

fn with(f: impl FnOnce(&mut Counts)) {
    COUNTS.with(|c| f(&mut c.borrow_mut()));
}

/// This instance's random id.
pub fn isolate() -> String {
    ISOLATE.with(Clone::clone)
}

/// The counts, set back to zero when `reset`.
pub fn take(reset: bool) -> Counts {
    COUNTS.with(|c| {
        if reset {
            std::mem::take(&mut *c.borrow_mut())
        } else {
            c.borrow().clone()
        }
    })
}

/// A Worker `fetch` invocation.
pub fn worker_request() {
    with(|c| c.worker_requests += 1);
}

/// A cron invocation.
pub fn cron_invocation() {
    with(|c| c.cron_invocations += 1);
}

/// A Durable Object request through a stub of `binding`, `ms` long.
pub fn do_request(binding: &str, ms: f64) {
    with(|c| {
        *c.do_requests.entry(binding.to_owned()).or_default() += 1;
        c.do_busy_ms += ms;
    });
}

/// An alarm invocation, `ms` long.
pub fn do_alarm(ms: f64) {
    with(|c| {
        c.do_alarms += 1;
        c.do_busy_ms += ms;
    });
}

/// A finished SQL statement's rows.
pub fn sql_rows(query: &str, read: usize, written: usize) {
    let (read, written) = (read as u64, written as u64);
    let head: String = query
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(60)
        .collect();
    with(|c| {
        c.sql_statements += 1;
        c.sql_rows_read += read;
        c.sql_rows_written += written;
        let e = c.sql_by_statement.entry(head).or_default();
        e[0] += 1;
        e[1] += read;
        e[2] += written;
    });
}

/// A `setAlarm` call.
pub fn alarm_set() {
    with(|c| c.alarm_sets += 1);
}

/// A `deleteAlarm` call.
pub fn alarm_delete() {
    with(|c| c.alarm_deletes += 1);
}

/// Bytes of a message body as sent: text as UTF-8, binary by its length,
/// anything else as its JSON text.
fn body_bytes(v: &JsValue) -> usize {
    if let Some(s) = v.as_string() {
        return s.len();
    }
    if let Ok(n) = Reflect::get(v, &JsValue::from_str("byteLength")) {
        if let Some(n) = n.as_f64() {
            return n as usize;
        }
    }
    js_sys::JSON::stringify(v)
        .ok()
        .and_then(|s| s.as_string())
        .map_or(0, |s| s.len())
}

const R2_CLASS_A: &[&str] = &["put", "delete", "list", "createMultipartUpload"];
const R2_CLASS_B: &[&str] = &["get", "head"];
const R2_OTHER: &[&str] = &["resumeMultipartUpload"];

fn r2_proxy(bucket: &JsValue) -> JsValue {
    let get =
        Closure::<dyn Fn(JsValue, JsValue) -> JsValue>::new(|target: JsValue, prop: JsValue| {
            let value = Reflect::get(&target, &prop).unwrap_or(JsValue::UNDEFINED);
            let Some(name) = prop.as_string() else {
                return value;
            };
            let name = name.as_str();
            let class_a = R2_CLASS_A.contains(&name);
            let class_b = R2_CLASS_B.contains(&name);
            if class_a || class_b {
                with(|c| {
                    let map = if class_a {
                        &mut c.r2_class_a
                    } else {
                        &mut c.r2_class_b
                    };
                    *map.entry(name.to_owned()).or_default() += 1;
                });
            }
            // The runtime's methods need the real bucket as `this`.
            match value.dyn_ref::<Function>() {
                Some(f) if class_a || class_b || R2_OTHER.contains(&name) => {
                    f.bind0(&target).into()
                }
                _ => value,
            }
        });
    proxy(bucket, get)
}

fn queue_proxy(queue: &JsValue, binding: String) -> JsValue {
    let get = Closure::<dyn Fn(JsValue, JsValue) -> JsValue>::new(
        move |target: JsValue, prop: JsValue| {
            let value = Reflect::get(&target, &prop).unwrap_or(JsValue::UNDEFINED);
            let name = prop.as_string().unwrap_or_default();
            let Some(f) = value.dyn_ref::<Function>().cloned() else {
                return value;
            };
            if name != "send" && name != "sendBatch" {
                return value;
            }
            let binding = binding.clone();
            let batch = name == "sendBatch";
            let wrapper = Closure::<dyn Fn(JsValue, JsValue) -> JsValue>::new(
                move |first: JsValue, options: JsValue| {
                    let bodies: Vec<JsValue> = if batch {
                        Array::from(&first)
                            .iter()
                            .map(|m| {
                                Reflect::get(&m, &JsValue::from_str("body")).unwrap_or_default()
                            })
                            .collect()
                    } else {
                        vec![first.clone()]
                    };
                    with(|c| {
                        let s = c.queue_sent.entry(binding.clone()).or_default();
                        for b in &bodies {
                            s.messages += 1;
                            s.write_ops += queue_units(body_bytes(b));
                        }
                    });
                    f.call2(&target, &first, &options)
                        .unwrap_or_else(|e| js_sys::Promise::reject(&e).into())
                },
            );
            wrapper.into_js_value()
        },
    );
    proxy(queue, get)
}

fn proxy(target: &JsValue, get: Closure<dyn Fn(JsValue, JsValue) -> JsValue>) -> JsValue {
    let handler = Object::new();
    let _ = Reflect::set(&handler, &JsValue::from_str("get"), &get.into_js_value());
    js_sys::Proxy::new(target, &handler).into()
}

/// `env` with its R2 bucket and queue bindings wrapped to count their
/// operations; everything else passes through unchanged.
///
/// The proxy's target is an empty object, not `env`: a `Proxy` may not
/// answer another value for a frozen property of its target.
pub fn wrap_env(env: Env) -> Env {
    let real: JsValue = env.into();
    let get =
        Closure::<dyn Fn(JsValue, JsValue) -> JsValue>::new(move |_: JsValue, prop: JsValue| {
            let value = Reflect::get(&real, &prop).unwrap_or(JsValue::UNDEFINED);
            if !value.is_object() {
                return value;
            }
            let kind = Object::from(value.clone()).constructor().name();
            match String::from(kind).as_str() {
                "R2Bucket" => r2_proxy(&value),
                "WorkerQueue" => queue_proxy(&value, prop.as_string().unwrap_or_default()),
                _ => value,
            }
        });
    proxy(&Object::new(), get).unchecked_into::<Env>()
}

/// Counts a consumer invocation of the queue the batch came from.
///
/// The batch's messages are not touched here: reading them (the runtime's
/// `messages` and each `body`) before the consumer does made the local
/// queue stop delivering after a few batches in default-size benchmark
/// runs (three runs stalled with it, none without). So reads and deletes
/// are derived by the bench once drained: every message sent to a queue
/// this Worker consumes was delivered and acked once (retries, which add a
/// read each, are not seen; the benchmark's runs have none).
pub fn batch<T>(batch: &MessageBatch<T>) {
    let queue = batch.queue();
    with(|c| {
        c.queue_invocations += 1;
        c.queue_consumed.entry(queue).or_default().batches += 1;
    });
}
