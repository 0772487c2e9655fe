//! A single-threaded executor with no clock of its own: tasks are polled
//! when the simulation says so, and an I/O a task awaits completes when the
//! simulation fills its [`Slot`]. Dropping a task is a crash at its await.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

/// A one-shot result cell an awaiting task polls.
pub struct Slot<T>(Rc<RefCell<Option<T>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self(Rc::new(RefCell::new(None)))
    }
}

impl<T> Slot<T> {
    pub fn fill(&self, v: T) {
        let mut s = self.0.borrow_mut();
        if s.is_none() {
            *s = Some(v);
        }
    }

    pub fn is_filled(&self) -> bool {
        self.0.borrow().is_some()
    }

    pub fn take(&self) -> Option<T> {
        self.0.borrow_mut().take()
    }

    /// Waits until filled.
    pub fn wait(&self) -> SlotWait<T> {
        SlotWait(self.clone())
    }
}

pub struct SlotWait<T>(Slot<T>);

impl<T> Future for SlotWait<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<T> {
        match self.0.take() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}

pub type BoxTask = Pin<Box<dyn Future<Output = ()>>>;

fn noop_waker() -> Waker {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(|_| RAW, |_| {}, |_| {}, |_| {});
    const RAW: RawWaker = RawWaker::new(std::ptr::null(), &VTABLE);
    // SAFETY: every function of the vtable ignores its data pointer.
    unsafe { Waker::from_raw(RAW) }
}

/// Polls `task` once; `true` when it finished.
pub fn poll_once(task: &mut BoxTask) -> bool {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    task.as_mut().poll(&mut cx).is_ready()
}
