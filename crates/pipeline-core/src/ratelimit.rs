//! The `429` answer of a synchronous write whose key slot is taken: the
//! headers are all derived from one instant, so they always agree.

/// When the key's write slot frees, seen from `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotTaken {
    pub now_ms: i64,
    pub free_at_ms: i64,
}

impl SlotTaken {
    /// Milliseconds until the slot frees (never negative).
    pub fn reset_after_ms(&self) -> i64 {
        (self.free_at_ms - self.now_ms).max(0)
    }

    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> i64 {
        ((self.reset_after_ms() + 999) / 1000).max(1)
    }

    /// `X-RateLimit-Reset`: Unix seconds when the slot frees, rounded up.
    pub fn reset_unix_secs(&self) -> i64 {
        (self.free_at_ms + 999).div_euclid(1000)
    }

    /// All the headers of the `429`, in order.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Retry-After", self.retry_after_secs().to_string()),
            ("X-RateLimit-Limit", "1".to_string()),
            ("X-RateLimit-Remaining", "0".to_string()),
            ("X-RateLimit-Reset", self.reset_unix_secs().to_string()),
            (
                "X-RateLimit-Reset-After-Ms",
                self.reset_after_ms().to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_up_and_agree() {
        let t = SlotTaken {
            now_ms: 10_000_100,
            free_at_ms: 10_000_900,
        };
        assert_eq!(t.reset_after_ms(), 800);
        assert_eq!(t.retry_after_secs(), 1);
        assert_eq!(t.reset_unix_secs(), 10_001);
        let t = SlotTaken {
            now_ms: 5_000,
            free_at_ms: 5_000,
        };
        assert_eq!(t.retry_after_secs(), 1, "never 0");
        let t = SlotTaken {
            now_ms: 5_000,
            free_at_ms: 7_001,
        };
        assert_eq!(t.retry_after_secs(), 3);
        assert_eq!(t.headers().len(), 5);
    }
}

/// Fuzzing: the 429 headers never panic and always agree.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn headers_agree(now in 0i64..4_000_000_000_000, wait in 0i64..100_000) {
            let t = SlotTaken { now_ms: now, free_at_ms: now + wait };
            prop_assert_eq!(t.reset_after_ms(), wait);
            prop_assert!(t.retry_after_secs() >= 1);
            prop_assert!(t.retry_after_secs() * 1000 >= wait);
            prop_assert!(t.reset_unix_secs() * 1000 >= t.free_at_ms);
            prop_assert!(t.reset_unix_secs() * 1000 - t.free_at_ms < 1000);
        }

        #[test]
        fn a_slot_in_the_past_never_gives_negative_headers(now in 0i64..4_000_000_000_000, back in 0i64..100_000) {
            let t = SlotTaken { now_ms: now, free_at_ms: now - back };
            prop_assert_eq!(t.reset_after_ms(), 0);
            prop_assert_eq!(t.retry_after_secs(), 1);
        }
    }
}
