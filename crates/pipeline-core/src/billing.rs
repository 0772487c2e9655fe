//! Billing units shared by the test build's operation counts and the
//! benchmark's cost model.

/// Size of one billed Queues operation: a message is written, read and
/// deleted in units of 64 KB.
pub const QUEUE_UNIT_BYTES: usize = 64 * 1024;

/// Billed Queues operations for one write (or read, or delete) of a
/// message of `bytes`: one per started 64 KB, at least one.
#[must_use]
pub fn queue_units(bytes: usize) -> u64 {
    u64::try_from(bytes.div_ceil(QUEUE_UNIT_BYTES).max(1)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_units_are_started_64_kb() {
        assert_eq!(queue_units(0), 1);
        assert_eq!(queue_units(1), 1);
        assert_eq!(queue_units(65_536), 1);
        assert_eq!(queue_units(65_537), 2);
        assert_eq!(queue_units(128 * 1024), 2);
        assert_eq!(queue_units(128 * 1024 + 1), 3);
    }
}
