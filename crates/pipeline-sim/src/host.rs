//! The engine's host inside the simulator: [`Store`], [`Blobs`], [`Clock`]
//! and [`StatsSink`] for one key's Durable Object, backed by the models.
//! Every async method registers an I/O with the world and waits for the
//! world to complete it; that await is where other events interleave and
//! where a crash drops the task.

use std::rc::Rc;

use pipeline_core::engine::{
    BlobError, Blobs, Clock, HostError, IdemRecord, Meta, Notifier, Op, OutboxEntry, Prunable,
    PutBody, StatsSink, Store, StoreError, StoredHead, UploadRecord,
};
use pipeline_core::message::WriteMessage;
use pipeline_core::stats::SourcePush;

use crate::exec::Slot;
use crate::world::{Io, IoResult, World};

/// An opened staged body: read when the put runs.
#[derive(Debug, Clone)]
pub struct SimStream {
    pub staged_key: String,
}

/// One key's Durable Object, as the engine sees it.
pub struct SimHost {
    pub world: Rc<World>,
    pub obj: usize,
}

impl SimHost {
    async fn io(&self, io: Io) -> IoResult {
        let slot: Slot<IoResult> = Slot::default();
        self.world.submit(Some(self.obj), io, slot.clone());
        slot.wait().await
    }
}

impl Store for SimHost {
    fn meta(&self) -> Result<Meta, StoreError> {
        self.world.objects.borrow()[self.obj].store.meta()
    }
    fn upload(&self, id: &str, accepted_ms: i64) -> Result<Option<UploadRecord>, StoreError> {
        self.world.objects.borrow()[self.obj]
            .store
            .upload(id, accepted_ms)
    }
    fn body(&self, id: &str) -> Result<Option<WriteMessage>, StoreError> {
        self.world.objects.borrow()[self.obj].store.body(id)
    }
    fn idempotency(&self, k: &str) -> Result<Option<IdemRecord>, StoreError> {
        self.world.objects.borrow()[self.obj].store.idempotency(k)
    }
    fn garbage(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.world.objects.borrow()[self.obj].store.garbage(limit)
    }
    fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.world.objects.borrow()[self.obj].store.outbox(limit)
    }
    fn forgotten(&self, id: &str, accepted_ms: i64) -> Result<bool, StoreError> {
        self.world.objects.borrow()[self.obj]
            .store
            .forgotten(id, accepted_ms)
    }
    fn oldest_prunable(&self) -> Result<Prunable, StoreError> {
        self.world.objects.borrow()[self.obj]
            .store
            .oldest_prunable()
    }
    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.world.apply_store(self.obj, ops)
    }
}

impl Blobs for SimHost {
    type Stream = SimStream;

    async fn head(&self, key: &str) -> Result<Option<StoredHead>, BlobError> {
        match self.io(Io::Head { key: key.into() }).await {
            IoResult::Head(r) => r,
            other => Err(BlobError::Transient(format!("sim: unexpected {other:?}"))),
        }
    }

    async fn open_staged(&self, staged_key: &str) -> Result<Option<SimStream>, BlobError> {
        match self
            .io(Io::OpenStaged {
                key: staged_key.into(),
            })
            .await
        {
            IoResult::Open(r) => r.map(|found| {
                found.then(|| SimStream {
                    staged_key: staged_key.into(),
                })
            }),
            other => Err(BlobError::Transient(format!("sim: unexpected {other:?}"))),
        }
    }

    async fn put(
        &self,
        msg: &WriteMessage,
        body: PutBody<SimStream>,
        start_ms: i64,
    ) -> Result<String, BlobError> {
        let source = match body {
            PutBody::Empty => BodySource::Bytes(crate::world::hash_bytes(&[])),
            PutBody::Bytes(b) => BodySource::Bytes(crate::world::hash_bytes(&b)),
            PutBody::Stream(s) => BodySource::Staged(s.staged_key),
        };
        match self
            .io(Io::Put {
                key: msg.key.clone(),
                upload_id: msg.id.clone(),
                source,
                start_ms,
            })
            .await
        {
            IoResult::Put(r) => r,
            other => Err(BlobError::Transient(format!("sim: unexpected {other:?}"))),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self
            .io(Io::Delete {
                key: key.into(),
                upload_id: None,
            })
            .await
        {
            IoResult::Unit(r) => r,
            other => Err(BlobError::Transient(format!("sim: unexpected {other:?}"))),
        }
    }

    async fn delete_staged(&self, staged_key: &str) -> Result<(), BlobError> {
        match self
            .io(Io::DeleteStaged {
                key: staged_key.into(),
            })
            .await
        {
            IoResult::Unit(r) => r,
            other => Err(BlobError::Transient(format!("sim: unexpected {other:?}"))),
        }
    }
}

/// Where a put's bytes come from.
#[derive(Debug, Clone)]
pub enum BodySource {
    Bytes(u64),
    Staged(String),
}

impl Clock for SimHost {
    fn now_ms(&self) -> i64 {
        self.world.now()
    }

    async fn sleep(&self, ms: i64) {
        let _ = self.io(Io::Sleep { ms }).await;
    }

    async fn set_alarm(&self, at_ms: i64) -> Result<(), HostError> {
        self.world.set_alarm(self.obj, Some(at_ms));
        Ok(())
    }

    async fn delete_alarm(&self) -> Result<(), HostError> {
        self.world.set_alarm(self.obj, None);
        Ok(())
    }

    async fn get_alarm(&self) -> Result<Option<i64>, HostError> {
        Ok(self.world.objects.borrow()[self.obj].alarm)
    }
}

impl StatsSink for SimHost {
    async fn push_stats(&self, push: &SourcePush) -> Result<(), HostError> {
        match self
            .io(Io::Push {
                source: format!("key:{}", self.obj),
                push: Box::new(push.clone()),
            })
            .await
        {
            IoResult::Unit(Ok(())) => Ok(()),
            _ => Err(HostError("stats shard unreachable".into())),
        }
    }
}

impl Notifier for SimHost {
    async fn notify(&self, entries: &[OutboxEntry]) -> Result<(), HostError> {
        match self
            .io(Io::Notify {
                entries: entries.to_vec(),
            })
            .await
        {
            IoResult::Unit(Ok(())) => Ok(()),
            _ => Err(HostError("queue refused the send".into())),
        }
    }
}
