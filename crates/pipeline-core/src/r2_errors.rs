//! Which R2 failures are worth retrying. The runtime reports an R2 error as
//! text, `"<operation>: <message> (<code>)"`; the code (or, without one,
//! the message) tells a request that will fail the same way every time
//! from an outage.

use crate::engine::BlobError;

/// R2 error codes that a retry of the same request cannot fix: entity too
/// small, metadata too large, invalid object name, invalid argument, bad
/// digest, invalid range, entity too large.
pub const PERMANENT_CODES: [u32; 7] = [10011, 10012, 10020, 10029, 10037, 10039, 100100];

/// Messages that mean the same when no code is given.
const PERMANENT_TEXT: [&str; 5] = [
    "exceed the maximum allowed metadata size",
    "metadata missing or invalid",
    "object name is not valid",
    "must have a known length",
    "exceeds the maximum allowed object size",
];

/// The error code in a runtime message: the last `(<digits>)`.
fn code_of(message: &str) -> Option<u32> {
    let (_, tail) = message.rsplit_once('(')?;
    let (digits, _) = tail.split_once(')')?;
    digits.trim().parse().ok()
}

/// Classifies an R2 failure by its text.
pub fn classify(message: &str) -> BlobError {
    let lower = message.to_ascii_lowercase();
    let permanent = code_of(message).is_some_and(|c| PERMANENT_CODES.contains(&c))
        || PERMANENT_TEXT.iter().any(|t| lower.contains(t));
    if permanent {
        BlobError::Permanent(message.to_string())
    } else {
        BlobError::Transient(message.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_are_permanent_and_outages_transient() {
        let permanent = [
            "put: Your metadata headers exceed the maximum allowed metadata size. (10012)",
            "put: Metadata missing or invalid (10029)",
            "put: The specified object name is not valid. (10020)",
            "Provided readable stream must have a known length (request/response body or readable half of FixedLengthStream)",
            "get: Some future wording (10039)",
        ];
        for m in permanent {
            assert!(matches!(classify(m), BlobError::Permanent(_)), "{m}");
        }
        let transient = [
            "put: We encountered an internal error. Please try again. (10001)",
            "Network connection lost.",
            "put: Reduce your concurrent request rate for the same object. (10058)",
            "",
            "(",
            "x (abc)",
        ];
        for m in transient {
            assert!(matches!(classify(m), BlobError::Transient(_)), "{m}");
        }
    }
}
