//! `Counter`: one Durable Object per counter name, holding one signed
//! 64-bit value. Requests to one object run one at a time, so every
//! increment is applied exactly once and in order; the value is stored as
//! TEXT because SQLite integers above 2^53 would come back as floats.

use pipeline_core::counter::{apply, Direction};
use pipeline_core::error::ApiError;
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Method, Request, Response, State};

use super::sql::{create_kv, get_doc, put_doc};
use super::{ok_json, request_json, respond};
use crate::http::internal;

/// A change sent by the Worker.
#[derive(Debug, Serialize, Deserialize)]
pub struct CounterChange {
    pub by: i64,
    pub decrement: bool,
}

/// The counter's value, as the Worker answers it.
#[derive(Debug, Serialize, Deserialize)]
pub struct CounterValue {
    pub value: i64,
}

#[durable_object]
pub struct Counter {
    state: State,
}

impl DurableObject for Counter {
    fn new(state: State, _env: Env) -> Self {
        let _ = create_kv(&state.storage().sql());
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let result = match req.method() {
            Method::Get => self
                .read()
                .and_then(|value| ok_json(&CounterValue { value })),
            Method::Post => match request_json::<CounterChange>(&mut req).await {
                Ok(change) => self.change(change),
                Err(e) => Err(internal("counter change", e)),
            },
            Method::Delete => self
                .write(0)
                .and_then(|_| ok_json(&CounterValue { value: 0 })),
            _ => Err(ApiError::Internal("unsupported counter call".into())),
        };
        respond(result)
    }
}

impl Counter {
    fn read(&self) -> Result<i64, ApiError> {
        let text: Option<String> = get_doc(&self.state.storage().sql(), "value")?;
        match text {
            None => Ok(0),
            Some(t) => t.parse().map_err(|e| internal("stored counter", e)),
        }
    }

    fn write(&self, value: i64) -> Result<(), ApiError> {
        put_doc(&self.state.storage().sql(), "value", &value.to_string())
    }

    fn change(&self, change: CounterChange) -> Result<Response, ApiError> {
        let dir = if change.decrement {
            Direction::Decrement
        } else {
            Direction::Increment
        };
        let value = apply(self.read()?, change.by, dir)?;
        self.write(value)?;
        ok_json(&CounterValue { value })
    }
}
