//! Published Cloudflare prices the cost scenario turns operation counts
//! into, one place for all of them. Paid-plan prices beyond the monthly
//! allowance (the marginal price; allowances are listed but not
//! subtracted), in US dollars. Each says where it was read and whether the
//! figure was confirmed on Cloudflare's own page or only in a secondary
//! summary of it.

use serde::Serialize;

/// One price.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Price {
    /// What is billed.
    pub item: &'static str,
    /// US dollars per million units.
    pub usd_per_million: f64,
    /// The unit.
    pub unit: &'static str,
    /// Included each month on the paid plan, units.
    pub included_per_month: f64,
    /// Where the figure was read, and when.
    pub source: &'static str,
    /// Whether the figure was seen on Cloudflare's own pricing page (true)
    /// or only in a third-party summary of it (false).
    pub confirmed: bool,
}

/// When the prices below were looked up.
pub const READ_ON: &str = "2026-12-01";

/// Workers Standard: requests.
pub const WORKER_REQUESTS: Price = Price {
    item: "Workers requests",
    usd_per_million: 0.30,
    unit: "request",
    included_per_month: 10e6,
    source: "Cloudflare Workers pricing page (Standard usage model), read 2026-12-01, as quoted by third-party price summaries; the page itself was not in the searchable corpus",
    confirmed: false,
};

/// Workers Standard: CPU time.
pub const WORKER_CPU_MS: Price = Price {
    item: "Workers CPU time",
    usd_per_million: 0.02,
    unit: "CPU ms",
    included_per_month: 30e6,
    source: "Cloudflare Workers pricing page (Standard usage model), read 2026-12-01, as quoted by third-party price summaries",
    confirmed: false,
};

/// Queues: operations (a write, read or delete of up to 64 KB).
pub const QUEUE_OPS: Price = Price {
    item: "Queues operations (64 KB write, read or delete)",
    usd_per_million: 0.40,
    unit: "operation",
    included_per_month: 1e6,
    source: "Cloudflare Queues pricing page, read 2026-12-01, as quoted by a third-party summary of it (3 operations per message: write, read, delete; a retry adds a read)",
    confirmed: false,
};

/// Durable Objects: requests (HTTP, RPC sessions, alarm invocations).
pub const DO_REQUESTS: Price = Price {
    item: "Durable Objects requests (incl. alarm invocations)",
    usd_per_million: 0.15,
    unit: "request",
    included_per_month: 1e6,
    source: "Cloudflare Durable Objects pricing page (compute billing), read 2026-12-01",
    confirmed: true,
};

/// Durable Objects: duration, billed for 128 MB while active.
pub const DO_DURATION: Price = Price {
    item: "Durable Objects duration",
    usd_per_million: 12.50,
    unit: "GB-s",
    included_per_month: 400_000.0,
    source: "Cloudflare Durable Objects pricing page (compute billing), read 2026-12-01; billed for 128 MB per active object",
    confirmed: true,
};

/// SQLite-backed Durable Objects: rows read.
pub const SQL_ROWS_READ: Price = Price {
    item: "SQLite rows read (Durable Objects)",
    usd_per_million: 0.001,
    unit: "row",
    included_per_month: 25e9,
    source: "Cloudflare Durable Objects pricing page (SQLite storage billing), read 2026-12-01; not confirmed: the search found the same figure only for D1's rows read",
    confirmed: false,
};

/// SQLite-backed Durable Objects: rows written.
pub const SQL_ROWS_WRITTEN: Price = Price {
    item: "SQLite rows written (Durable Objects)",
    usd_per_million: 1.00,
    unit: "row",
    included_per_month: 50e6,
    source: "Cloudflare Durable Objects pricing page (SQLite storage billing), read 2026-12-01; not confirmed on the page itself: verbatim quotes of it (dated 2026-09-30) give $1.00 / million rows and its footnote \"Each setAlarm() is billed as a single row written\"",
    confirmed: false,
};

/// R2 Standard: Class A operations.
pub const R2_CLASS_A: Price = Price {
    item: "R2 Class A operations (put, delete, list, copy, multipart)",
    usd_per_million: 4.50,
    unit: "operation",
    included_per_month: 1e6,
    source: "Cloudflare R2 pricing page (Standard storage), read 2026-12-01",
    confirmed: true,
};

/// R2 Standard: Class B operations.
pub const R2_CLASS_B: Price = Price {
    item: "R2 Class B operations (get, head)",
    usd_per_million: 0.36,
    unit: "operation",
    included_per_month: 10e6,
    source: "Cloudflare R2 pricing page (Standard storage), read 2026-12-01",
    confirmed: true,
};

/// R2 Standard: storage.
pub const R2_STORAGE: Price = Price {
    item: "R2 storage (Standard)",
    usd_per_million: 15_000.0,
    unit: "GB-month (price given per million GB-month: $0.015 / GB-month)",
    included_per_month: 10.0,
    source: "Cloudflare R2 pricing page (Standard storage), read 2026-12-01",
    confirmed: true,
};

/// Every price, for the report.
pub const ALL: [Price; 10] = [
    WORKER_REQUESTS,
    WORKER_CPU_MS,
    QUEUE_OPS,
    DO_REQUESTS,
    DO_DURATION,
    SQL_ROWS_READ,
    SQL_ROWS_WRITTEN,
    R2_CLASS_A,
    R2_CLASS_B,
    R2_STORAGE,
];

/// Memory a Durable Object is billed for while active, GB.
pub const DO_BILLED_GB: f64 = 0.128;

impl Price {
    /// Dollars for `units` of this item.
    #[must_use]
    pub fn usd(&self, units: f64) -> f64 {
        units * self.usd_per_million / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_turn_units_into_dollars() {
        assert!((R2_CLASS_A.usd(1e6) - 4.5).abs() < 1e-12);
        assert!((QUEUE_OPS.usd(3e6) - 1.2).abs() < 1e-12);
        assert!((R2_STORAGE.usd(1.0) - 0.015).abs() < 1e-12);
        assert!(ALL
            .iter()
            .all(|p| p.usd_per_million > 0.0 && !p.source.is_empty()));
    }
}
