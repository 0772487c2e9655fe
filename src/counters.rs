//! `/counters/{name}`: strongly consistent signed 64-bit counters, one
//! Durable Object per name. Bad input is refused here, before the object.

use pipeline_core::counter::parse_by;
use pipeline_core::error::ApiError;
use pipeline_core::key::validate_counter_name;
use serde_json::json;
use worker::Request;

use crate::app::App;
use crate::http::{self, ApiResult};
use crate::objects::counter::{ChangeCounter, ReadCounter, ResetCounter};

/// What a counter request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterOp {
    Read,
    Increment,
    Decrement,
    Reset,
}

/// Serves one counter request.
///
/// # Errors
/// `invalid_name`, `invalid_body`, `counter_overflow`.
pub async fn serve(app: &App, mut req: Request, name: &str, op: CounterOp) -> ApiResult {
    validate_counter_name(name)?;
    let stub = app.counter(name)?;
    let value = match op {
        CounterOp::Read => stub.call(&ReadCounter {}).await?.value,
        CounterOp::Reset => {
            stub.call(&ResetCounter {}).await?;
            return http::empty(204);
        }
        CounterOp::Increment | CounterOp::Decrement => {
            let body = req
                .bytes()
                .await
                .map_err(|e| ApiError::InvalidBody(format!("reading the body: {e}")))?;
            let by = parse_by(&body)?;
            let change = ChangeCounter {
                by,
                decrement: op == CounterOp::Decrement,
            };
            stub.call(&change).await?.value
        }
    };
    http::json(200, &json!({"name": name, "value": value}))
}
