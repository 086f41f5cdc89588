//! Corking: while a thread is corked, its sends are appended to each connection's queue and
//! written with one syscall per connection when it uncorks.
//!
//! Two scopes cork. A [`CorkScope`] covers a stretch of Rust code (a reader's turn over one
//! chunk, a run of cluster envelopes) and uncorks when it ends, even by a panic. The JS thread
//! corks for each batch of events it handles: that scope spans calls from JS, so it is opened by
//! `pollEvents()` with [`cork`] and closed by the next `pollEvents()` or `uncork()` with
//! [`uncork`]. Broadcasts from a corked thread go into one shared buffer per room instead of
//! every member's queue (`fanout::SharedFanout`), delivered first when the thread uncorks.

use std::cell::RefCell;
use std::sync::Arc;

use crate::conn::Conn;
use crate::fanout;

thread_local! {
    /// Connections with corked bytes, when this thread is corked.
    static CORK: RefCell<Option<Vec<Arc<Conn>>>> = const { RefCell::new(None) };
}

/// Starts corking this thread's sends; returns false when it already was corked (then the
/// caller must not uncork: the outer cork does). Prefer [`CorkScope`] unless the scope spans
/// calls from JS.
pub fn cork() -> bool {
    CORK.with_borrow_mut(|c| {
        if c.is_some() {
            false
        } else {
            *c = Some(Vec::new());
            true
        }
    })
}

/// Writes every corked connection's bytes (one syscall each) and stops corking.
pub fn uncork() {
    let Some(list) = CORK.with_borrow_mut(Option::take) else { return };
    // The shared fan-out goes first: a member's corked bytes predate it (any send after it was
    // started delivered it first), and with the thread uncorked each member whose queue is empty
    // gets it straight from the shared buffer.
    fanout::settle();
    for conn in list {
        conn.flush_corked();
    }
}

/// Whether this thread is corked (its sends are written when it uncorks).
#[inline]
pub fn is_corked() -> bool {
    CORK.with_borrow(Option::is_some)
}

/// Puts a connection with newly corked bytes on this thread's list (the caller marks its
/// outbox `corked`, so it is listed once). Nothing happens when the thread is not corked.
pub fn defer(conn: &Arc<Conn>) {
    CORK.with_borrow_mut(|c| {
        if let Some(list) = c {
            list.push(conn.clone());
        }
    });
}

/// This thread is corked while the scope lives; the outermost scope uncorks when dropped.
#[must_use = "the thread uncorks when the scope is dropped"]
pub struct CorkScope {
    /// This scope corked the thread (it was not corked already).
    outer: bool,
}

impl CorkScope {
    /// Corks this thread until the scope is dropped (a no-op inside another cork).
    #[inline]
    pub fn begin() -> Self {
        CorkScope { outer: cork() }
    }
}

impl Drop for CorkScope {
    fn drop(&mut self) {
        if self.outer {
            uncork();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_the_outer_one_uncorks() {
        assert!(!is_corked());
        {
            let _outer = CorkScope::begin();
            assert!(is_corked());
            {
                let _inner = CorkScope::begin();
                assert!(is_corked());
            }
            assert!(is_corked(), "an inner scope leaves the outer cork in place");
        }
        assert!(!is_corked());
    }

    #[test]
    fn a_scope_inside_a_js_cork_leaves_it_corked() {
        assert!(cork());
        assert!(!cork(), "already corked");
        drop(CorkScope::begin());
        assert!(is_corked());
        uncork();
        assert!(!is_corked());
        uncork();
    }

    #[test]
    fn a_panic_inside_a_scope_still_uncorks() {
        let result = std::panic::catch_unwind(|| {
            let _scope = CorkScope::begin();
            panic!("inside a cork");
        });
        assert!(result.is_err());
        assert!(!is_corked());
    }
}
