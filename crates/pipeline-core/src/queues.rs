//! Which upload queue a write goes to, and what a queue's name says about
//! the consumer that handles it.
//!
//! One queue carries about 5,000 messages/s; a deployment that needs more
//! spreads its uploads over `UPLOAD_QUEUES` = N queues (bindings `UPLOADS`,
//! `UPLOADS_1`, … `UPLOADS_{N-1}`). Every write of one key goes to the same
//! queue, [`shard_of`] its key: one key's writes then meet in the same
//! consumer batches, so they coalesce as they do with one queue.
//!
//! The hash is fixed and documented ([`fnv1a_64`], FNV-1a 64-bit, then
//! MurmurHash3's finalizer [`fmix64`]),
//! never std's per-process randomised hasher: every producer invocation
//! must map a key to the same queue, today and after a redeploy.

use crate::protocol::bindings;

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits, of `bytes` (the reference algorithm: xor each byte in,
/// then multiply by the prime).
#[must_use]
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's 64-bit finalizer (`fmix64`): every input bit reaches
/// every output bit.
#[must_use]
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The upload queue (0-based shard) of `key` among `queues` queues:
/// `fmix64(fnv1a_64(key bytes)) mod queues`.
///
/// The finalizer matters: FNV-1a mixes its last bytes through a single
/// multiplication, so keys that differ in one bit of their last character
/// (`…/a` and `…/q`) differ in few, mostly middle, bits of the hash; with
/// a plain modulo they would nearly always share a queue. `fmix64` spreads
/// that difference over all 64 bits before the modulo reads the low ones.
///
/// `queues` of 0 or 1 is shard 0: with one queue, everything goes to
/// `UPLOADS`, exactly as before sharding existed.
#[must_use]
pub fn shard_of(key: &str, queues: u32) -> u32 {
    if queues <= 1 {
        return 0;
    }
    let h = fmix64(fnv1a_64(key.as_bytes()));
    // The remainder is below `queues`, a u32.
    u32::try_from(h % u64::from(queues)).unwrap_or(0)
}

/// The producer binding of upload queue `shard`: `UPLOADS` for shard 0
/// (the name of the single queue of a deployment with one), then
/// `UPLOADS_1`, `UPLOADS_2`, ….
#[must_use]
pub fn upload_binding(shard: u32) -> String {
    if shard == 0 {
        bindings::UPLOADS.to_string()
    } else {
        format!("{}_{shard}", bindings::UPLOADS)
    }
}

/// What a consumer invocation's queue is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRole {
    /// An upload queue: `…-uploads` or `…-uploads-<n>` (and, as before
    /// sharding, any name no other role claims).
    Uploads,
    /// The upload dead letter queue (`…-dlq`), shared by all upload queues.
    UploadDeadLetters,
    /// Webhook deliveries (`…-webhooks`).
    Webhooks,
    /// Webhooks that used up their retries (`…-webhooks-dlq`).
    WebhookDeadLetters,
    /// Commit events (`…-events`), meant for downstream Workers.
    Events,
}

/// The role of the queue named `name` (the names in `wrangler.toml`:
/// `r2-pipeline-uploads`, `r2-pipeline-uploads-1`, …,
/// `r2-pipeline-uploads-dlq`, `r2-pipeline-webhooks`,
/// `r2-pipeline-webhooks-dlq`, `r2-pipeline-events`). Roles are read from
/// the suffix so a deployment may choose its own prefix.
#[must_use]
pub fn queue_role(name: &str) -> QueueRole {
    if name.ends_with("-webhooks-dlq") {
        QueueRole::WebhookDeadLetters
    } else if name.ends_with("-webhooks") {
        QueueRole::Webhooks
    } else if name.ends_with("-events") {
        QueueRole::Events
    } else if name.ends_with("-dlq") {
        QueueRole::UploadDeadLetters
    } else {
        // `…-uploads`, `…-uploads-<n>`, and any other name: the upload
        // consumer, which was the fallback before sharding too.
        QueueRole::Uploads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fmix64_is_murmur3s_finalizer() {
        assert_eq!(fmix64(0), 0);
        // A bijection: distinct inputs, distinct outputs.
        let outs: std::collections::BTreeSet<u64> = (0..10_000u64).map(fmix64).collect();
        assert_eq!(outs.len(), 10_000);
    }

    #[test]
    fn fnv1a_64_matches_the_reference_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn one_queue_is_always_uploads() {
        for key in ["", "a", "photos/cat.jpg", "ünïcode/🔑"] {
            assert_eq!(shard_of(key, 1), 0);
            assert_eq!(shard_of(key, 0), 0);
        }
        assert_eq!(upload_binding(0), "UPLOADS");
        assert_eq!(upload_binding(1), "UPLOADS_1");
        assert_eq!(upload_binding(12), "UPLOADS_12");
    }

    #[test]
    fn keys_differing_in_one_high_bit_spread_over_two_queues() {
        // `a` (0x61) and `q` (0x71) differ in bit 4 only; FNV-1a alone mod
        // 2 puts every such pair in the same queue.
        assert!((0..200).all(|i| {
            let a = fnv1a_64(format!("k/{i}/a").as_bytes());
            let q = fnv1a_64(format!("k/{i}/q").as_bytes());
            a % 2 == q % 2
        }));
        let pairs = (0..200)
            .filter(|i| {
                let a = format!("k/{i}/a");
                let q = format!("k/{i}/q");
                shard_of(&a, 2) != shard_of(&q, 2)
            })
            .count();
        // About half of the pairs split, as for unrelated keys.
        assert!(
            (70..=130).contains(&pairs),
            "{pairs} of 200 pairs were split"
        );
    }

    #[test]
    fn spread_is_roughly_even() {
        for queues in [2u32, 3, 4, 7, 16] {
            let mut counts = vec![0u32; queues as usize];
            let keys = 20_000u32;
            for i in 0..keys {
                counts[shard_of(&format!("tenant-{}/obj/{i}.json", i % 37), queues) as usize] += 1;
            }
            let mean = f64::from(keys) / f64::from(queues);
            for (s, c) in counts.iter().enumerate() {
                let off = (f64::from(*c) - mean).abs() / mean;
                assert!(off < 0.1, "{queues} queues: shard {s} got {c}, mean {mean}");
            }
        }
    }

    #[test]
    fn queue_names_route_to_their_consumers() {
        for n in [
            "r2-pipeline-uploads",
            "r2-pipeline-uploads-1",
            "r2-pipeline-uploads-17",
        ] {
            assert_eq!(queue_role(n), QueueRole::Uploads, "{n}");
        }
        assert_eq!(
            queue_role("r2-pipeline-uploads-dlq"),
            QueueRole::UploadDeadLetters
        );
        assert_eq!(queue_role("r2-pipeline-webhooks"), QueueRole::Webhooks);
        assert_eq!(
            queue_role("r2-pipeline-webhooks-dlq"),
            QueueRole::WebhookDeadLetters
        );
        assert_eq!(queue_role("r2-pipeline-events"), QueueRole::Events);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn same_key_same_shard_and_in_range(key in "\\PC{0,80}", queues in 1u32..64) {
            let s = shard_of(&key, queues);
            prop_assert!(s < queues);
            prop_assert_eq!(s, shard_of(&key.clone(), queues));
            // The mapping is a function of the bytes only.
            prop_assert_eq!(s, shard_of(std::str::from_utf8(key.as_bytes()).unwrap_or(""), queues));
        }

        #[test]
        fn shard_n_binding_names_round_trip(shard in 1u32..1000) {
            let name = upload_binding(shard);
            prop_assert_eq!(name.strip_prefix("UPLOADS_").and_then(|n| n.parse::<u32>().ok()), Some(shard));
        }
    }
}
