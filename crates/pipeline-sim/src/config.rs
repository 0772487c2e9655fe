//! One run's parameters, drawn from its seed: how many keys and clients,
//! how long they write, and how often each fault strikes.

use crate::rng::Rng;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub keys: usize,
    pub clients: usize,
    /// How long clients write and faults strike; then the pipeline drains.
    pub run_ms: i64,
    /// Mean pause between two actions of a client.
    pub client_pause_ms: i64,
    pub p_sync: f64,
    pub p_delete: f64,
    pub p_staged: f64,
    pub p_idempotent: f64,
    pub p_status: f64,
    /// A client's write is a `POST /batch` of a few writes.
    pub p_batch: f64,
    /// A client does a read-modify-write with `If-Match` / `If-None-Match`
    /// (retrying on `precondition_failed`).
    pub p_conditional: f64,
    /// Clock skew between the Workers that stamp writes.
    pub skew_ms: i64,
    pub r2_latency_ms: (i64, i64),
    pub p_r2_transient: f64,
    pub p_r2_permanent: f64,
    pub p_send_fail: f64,
    pub p_duplicate: f64,
    /// Longest delay of a duplicate delivery (beyond the status TTL, so
    /// duplicates of pruned statuses happen).
    pub duplicate_delay_ms: i64,
    pub p_store_fail: f64,
    pub p_late_alarm: f64,
    pub p_double_alarm: f64,
    pub p_push_fail: f64,
    /// A push lands but its answer is lost.
    pub p_push_ack_lost: f64,
    /// How long a source stays silent before the shard compacts its row:
    /// longer than the longest a scheduler can be kept from learning its
    /// pushes' outcome here (an outage plus retries).
    pub source_idle_ms: i64,
    /// A quiet spell in the clients' activity, longer than the idle window
    /// (so the stats shard compacts sources that then come back):
    /// `(start offset from the run's start, length)`.
    pub lull: Option<(i64, i64)>,
    /// A consumer invocation dies after its calls and before its acks.
    pub p_consumer_dies: f64,
    pub crash_every_ms: i64,
    pub outage_every_ms: i64,
    pub max_outage_ms: i64,
    pub max_batch: usize,
    pub batch_timeout_ms: i64,
    /// The queue delivers a batch only once `max_batch` messages are
    /// visible or the oldest has waited `batch_timeout_ms`, as Cloudflare
    /// Queues batch. Off, a delivery takes whatever is visible when any
    /// message's timeout passes (smaller batches, more interleavings: the
    /// fault runs' choice).
    pub full_batches: bool,
    pub max_retries: u32,
    pub status_ttl_ms: i64,
    /// `SEEN_IDS_TTL_SECONDS`: longer than any message lives here (a
    /// backlog, retries, duplicates and the dead letter queue together).
    pub seen_ids_ttl_ms: i64,
    /// A message's delivery is held back past the status retention (the
    /// upload consumer paused, or failing, for that long).
    pub p_backlog: f64,
    pub trace_lines: usize,
    /// An async write carries a callback URL.
    pub p_callback: f64,
    /// Commit events are on (the `EVENTS` queue is bound).
    pub events: bool,
    /// The webhook or event queue refuses a send.
    pub p_notify_fail: f64,
    /// `UPLOAD_QUEUES`: the producer groups `POST /batch` lines by queue
    /// and sends (and may fail) each group on its own. The simulated
    /// queues share one delivery pool, which already delivers in any
    /// order, as several real queues together do.
    pub upload_queues: u32,
}

impl SimConfig {
    /// The parameters of seed `seed`: every run differs in its mix.
    pub fn from_seed(seed: u64) -> Self {
        let mut r = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let max_retries = r.range(5, 8) as u32;
        // The consumer's stated tolerance, computed here (not through the
        // possibly planted backoff) so a planted bug does not change the
        // world it is tested in: 2 s doubling per retry.
        let tolerated = (1i64 << max_retries) * 1000;
        Self {
            seed,
            keys: r.range(1, 3) as usize,
            clients: r.range(1, 4) as usize,
            run_ms: r.range(5_000, 20_000),
            client_pause_ms: r.range(50, 600),
            p_sync: [0.0, 0.15, 0.4][r.below(3)],
            p_delete: [0.0, 0.1, 0.3][r.below(3)],
            p_staged: [0.0, 0.2, 0.6][r.below(3)],
            p_idempotent: [0.0, 0.2, 0.5][r.below(3)],
            p_status: 0.2,
            p_batch: 0.1,
            p_conditional: [0.0, 0.1, 0.3][r.below(3)],
            skew_ms: [0, 20, 300][r.below(3)],
            r2_latency_ms: (r.range(1, 20), r.range(20, 400)),
            p_r2_transient: [0.0, 0.03, 0.15][r.below(3)],
            p_r2_permanent: [0.0, 0.0, 0.01][r.below(3)],
            p_send_fail: [0.0, 0.05, 0.2][r.below(3)],
            p_duplicate: [0.0, 0.05, 0.2][r.below(3)],
            // Beyond the status retention too: duplicates of pruned writes.
            duplicate_delay_ms: r.range(100, tolerated * 4),
            p_store_fail: [0.0, 0.0, 0.02][r.below(3)],
            p_late_alarm: [0.0, 0.1][r.below(2)],
            p_double_alarm: [0.0, 0.1][r.below(2)],
            p_push_fail: [0.0, 0.1][r.below(2)],
            p_consumer_dies: [0.0, 0.0, 0.1, 0.5, 0.8][r.below(5)],
            crash_every_ms: [600_000, 3_000, 800][r.below(3)],
            outage_every_ms: [600_000, 10_000, 4_000][r.below(3)],
            // Outages the consumer's backoff must ride out.
            max_outage_ms: (tolerated / 2).max(1_000),
            max_batch: [1, 10, 100][r.below(3)],
            batch_timeout_ms: r.range(0, 1000),
            full_batches: false,
            max_retries,
            // Statuses outlive any delivery delay the consumer tolerates,
            // as the deployment's settings must (see the engine's docs).
            // and than a held write can wait (landing grace, retries).
            status_ttl_ms: r.range(tolerated * 2, tolerated * 3).max(120_000),
            seen_ids_ttl_ms: 0,
            p_backlog: 0.0,
            trace_lines: 40,
            p_callback: [0.0, 0.3, 1.0][r.below(3)],
            events: r.chance(0.5),
            p_notify_fail: [0.0, 0.1, 0.4][r.below(3)],
            p_push_ack_lost: [0.0, 0.1][r.below(2)],
            source_idle_ms: (tolerated / 2).max(1_000) + 30_000,
            lull: None,
            // From the seed without a draw, so the other parameters of
            // every seed stay what they were before queues were sharded.
            upload_queues: (seed % 3) as u32 + 1,
        }
        .with_lull(&mut r)
        .with_backlog(&mut r)
    }

    /// One hot key written at `per_key_per_s` asynchronous puts a second
    /// (inline bodies, no conditions, no statuses polled) for `run_ms`,
    /// with no fault injected: the steady state whose per-key figures
    /// (commit lag, coalescing, R2 writes per second) the capacity model
    /// in `docs/SCALE.md` assumes. R2 latency 10 to 200 ms (5 % of
    /// operations up to 1.5 s), queue batches as the deployment's upload
    /// consumer sets them (100 messages or 1 s, whichever comes first).
    pub fn at_rate(seed: u64, per_key_per_s: u64, run_ms: i64) -> Self {
        let mut cfg = Self::from_seed(seed);
        // Clients pause 100 ms on average between writes, so that many
        // clients make the rate.
        let pause_ms = 100;
        cfg.clients = (per_key_per_s * pause_ms as u64).div_ceil(1000).max(1) as usize;
        cfg.client_pause_ms = cfg.clients as i64 * 1000 / per_key_per_s.max(1) as i64;
        Self {
            keys: 1,
            run_ms,
            p_sync: 0.0,
            p_delete: 0.0,
            p_staged: 0.0,
            p_idempotent: 0.0,
            p_status: 0.0,
            p_batch: 0.0,
            p_conditional: 0.0,
            skew_ms: 0,
            r2_latency_ms: (10, 200),
            p_r2_transient: 0.0,
            p_r2_permanent: 0.0,
            p_send_fail: 0.0,
            p_duplicate: 0.0,
            p_store_fail: 0.0,
            p_late_alarm: 0.0,
            p_double_alarm: 0.0,
            p_push_fail: 0.0,
            p_push_ack_lost: 0.0,
            p_consumer_dies: 0.0,
            // First due once the clients stopped: then they do nothing.
            crash_every_ms: run_ms + 1,
            outage_every_ms: run_ms + 1,
            // wrangler.toml's upload consumer: max_batch_size 100,
            // max_batch_timeout 1 s.
            max_batch: 100,
            batch_timeout_ms: 1000,
            full_batches: true,
            p_callback: 0.0,
            events: false,
            p_notify_fail: 0.0,
            lull: None,
            upload_queues: 1,
            trace_lines: 40,
            ..cfg
        }
    }

    /// Draws the backlog fault and sets the seen-id window past the
    /// longest life a message has here: a backlog of up to twice the
    /// status retention, the consumer's retries (at most half of it),
    /// duplicates (up to twice it) and the dead letter queue's retries.
    fn with_backlog(mut self, r: &mut Rng) -> Self {
        self.p_backlog = [0.0, 0.0, 0.05][r.below(3)];
        self.seen_ids_ttl_ms = self.status_ttl_ms * 8;
        self
    }

    /// Draws the quiet spell (after every other parameter, so adding it
    /// did not change the others' draws).
    fn with_lull(mut self, r: &mut Rng) -> Self {
        if r.chance(0.3) {
            let start = r.range(self.run_ms / 4, self.run_ms * 3 / 4);
            self.lull = Some((start, self.source_idle_ms + r.range(1_000, 20_000)));
        }
        self
    }
}
