//! Small helpers over Durable Object SQLite storage: reading rows without
//! `one()` (which hangs on zero rows, see docs/DEVELOPING.md) and a key-value
//! table for JSON documents, and transactions.

use pipeline_core::error::ApiError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use worker::{SqlCursor, SqlStorage, SqlStorageValue};

use crate::http::internal;

/// Runs `f` in one SQLite transaction (`storage.transactionSync`): when
/// it returns an error, everything it wrote is rolled back. worker 0.8.7
/// has no wrapper for it: the closure throws to roll back.
///
/// # Errors
/// `f`'s error text, or the runtime's.
pub fn atomically(
    raw: &worker::worker_sys::types::DurableObjectStorage,
    sql: &SqlStorage,
    f: impl FnOnce(&SqlStorage) -> Result<(), String> + 'static,
) -> Result<(), String> {
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::{JsCast, JsValue};
    let sql = sql.clone();
    let body = Closure::once(move || -> Result<JsValue, JsValue> {
        f(&sql)
            .map(|()| JsValue::UNDEFINED)
            .map_err(|e| js_sys::Error::new(&e).into())
    });
    let tx = js_sys::Reflect::get(raw, &JsValue::from_str("transactionSync"))
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or_else(|| "storage.transactionSync is missing".to_string())?;
    tx.call1(raw, body.as_ref().unchecked_ref())
        .map(|_| ())
        .map_err(|e| {
            let text = e
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
                .or_else(|| e.as_string())
                .unwrap_or_else(|| "transaction failed".into());
            format!("transaction rolled back: {text}")
        })
}

/// Adds a finished statement's `rowsRead` / `rowsWritten` (the runtime's
/// own counts, which SQLite billing uses) to the test build's billing
/// counts, under the statement's text; nothing in a production build.
pub fn note(cursor: &SqlCursor, query: &str) {
    #[cfg(feature = "test-routes")]
    crate::billing::sql_rows(query, cursor.rows_read(), cursor.rows_written());
    #[cfg(not(feature = "test-routes"))]
    let _ = (cursor, query);
}

/// Runs a statement that returns no rows.
///
/// # Errors
/// [`ApiError::Internal`] with the statement's error.
pub fn exec(sql: &SqlStorage, query: &str, params: Vec<SqlStorageValue>) -> Result<(), ApiError> {
    sql.exec(query, params)
        .map(|c| note(&c, query))
        .map_err(|e| internal("sql", e))
}

/// Runs a query and decodes every row.
///
/// # Errors
/// [`ApiError::Internal`] with the query's or the decoding's error.
pub fn rows<T: DeserializeOwned>(
    sql: &SqlStorage,
    query: &str,
    params: Vec<SqlStorageValue>,
) -> Result<Vec<T>, ApiError> {
    sql.exec(query, params)
        .and_then(|c| {
            let rows = c.to_array::<T>();
            note(&c, query);
            rows
        })
        .map_err(|e| internal("sql", e))
}

/// The first row of a query, if any.
///
/// # Errors
/// As [`rows`].
pub fn first<T: DeserializeOwned>(
    sql: &SqlStorage,
    query: &str,
    params: Vec<SqlStorageValue>,
) -> Result<Option<T>, ApiError> {
    Ok(rows(sql, query, params)?.into_iter().next())
}

#[derive(Deserialize)]
struct Doc {
    v: String,
}

/// Creates the `kv` table of JSON documents.
///
/// # Errors
/// As [`exec`].
pub fn create_kv(sql: &SqlStorage) -> Result<(), ApiError> {
    exec(
        sql,
        "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
        vec![],
    )
}

/// Reads a JSON document from `kv`.
///
/// # Errors
/// As [`rows`], or a document that no longer decodes.
pub fn get_doc<T: DeserializeOwned>(sql: &SqlStorage, k: &str) -> Result<Option<T>, ApiError> {
    match first::<Doc>(sql, "SELECT v FROM kv WHERE k = ?", vec![k.into()])? {
        None => Ok(None),
        Some(d) => serde_json::from_str(&d.v)
            .map(Some)
            .map_err(|e| internal("stored document", e)),
    }
}

/// Writes a JSON document to `kv`.
///
/// # Errors
/// As [`exec`].
pub fn put_doc<T: Serialize>(sql: &SqlStorage, k: &str, v: &T) -> Result<(), ApiError> {
    let text = serde_json::to_string(v).map_err(|e| internal("encoding a document", e))?;
    exec(
        sql,
        "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
        vec![k.into(), text.into()],
    )
}
