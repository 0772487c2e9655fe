//! The example of the README's "Use it from Rust": write, wait until the
//! write is committed, read it back. Against the local Worker
//! (`bash scripts/dev.sh`): `cargo run -p pipeline-client --example put_and_wait`.

use std::time::Duration;

use pipeline_client::{Client, ClientError, GetOptions, PutOptions};

fn main() -> Result<(), ClientError> {
    let client = Client::builder("http://127.0.0.1:8787")
        .token(Some("dev-token"))
        .build();
    let accepted = client.put_object(
        "greetings/hello.txt",
        b"hello",
        &PutOptions::content_type("text/plain"),
    )?;
    // Long-polls the status; Err(NotCommitted) if superseded or failed, Err(NotTerminal) on timeout.
    let status = client.wait_committed(&accepted.id, Duration::from_secs(30))?;
    let object = client.get_object("greetings/hello.txt", &GetOptions::default())?;
    assert_eq!(
        (object.body.as_slice(), object.etag()),
        (&b"hello"[..], status.etag.as_deref())
    );
    Ok(())
}
