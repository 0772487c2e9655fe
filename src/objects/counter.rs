//! `Counter`: one Durable Object per counter name, holding one signed
//! 64-bit value. Requests to one object run one at a time, so every
//! increment is applied exactly once and in order; the value is stored as
//! TEXT because SQLite integers above 2^53 would come back as floats.

use pipeline_core::counter::{apply, Direction};
use pipeline_core::error::ApiError;
use pipeline_core::protocol::Call;
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, State};

use super::sql::{create_kv, get_doc, put_doc};
use super::{respond, serve};
use crate::http::internal;

/// Reads the value.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ReadCounter {}

impl Call for ReadCounter {
    const PATH: &'static str = "/read";
    type Reply = CounterValue;
}

/// Adds `by` (or subtracts it).
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeCounter {
    pub by: i64,
    pub decrement: bool,
}

impl Call for ChangeCounter {
    const PATH: &'static str = "/change";
    type Reply = CounterValue;
}

/// Sets the value back to 0.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ResetCounter {}

impl Call for ResetCounter {
    const PATH: &'static str = "/reset";
    type Reply = CounterValue;
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
        let path = req.path();
        let result = match path.as_str() {
            ReadCounter::PATH => {
                serve(&mut req, |_: ReadCounter| async {
                    Ok(CounterValue {
                        value: self.read()?,
                    })
                })
                .await
            }
            ChangeCounter::PATH => serve(&mut req, |c| async { self.change(c) }).await,
            ResetCounter::PATH => {
                serve(&mut req, |_: ResetCounter| async {
                    self.write(0)?;
                    Ok(CounterValue { value: 0 })
                })
                .await
            }
            _ => Err(ApiError::Internal(format!("unknown counter call {path}"))),
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

    fn change(&self, change: ChangeCounter) -> Result<CounterValue, ApiError> {
        let dir = if change.decrement {
            Direction::Decrement
        } else {
            Direction::Increment
        };
        let value = apply(self.read()?, change.by, dir)?;
        self.write(value)?;
        Ok(CounterValue { value })
    }
}
