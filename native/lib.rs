//! rnode-ws engine: a WebSocket server for Node.js on tokio, hyper and tungstenite.
//!
//! This file is the napi surface and nothing more; each concept lives in its own module.
#![deny(clippy::unwrap_used)]

mod config;
mod connection;
mod engine;
mod error;
mod events;
mod server;
mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{Function, PromiseRaw, Uint8ArraySlice};
use napi::{Env, Result};
use napi_derive::napi;
use tokio_tungstenite::tungstenite::Message;

use crate::config::{Config, NativeOptions};
use crate::engine::Engine;
use crate::events::Batch;

/// Counters for `getStats()` and the batching debug figures.
#[napi(object)]
pub struct NativeStats {
    pub total_connections: u32,
    pub messages_in: f64,
    pub messages_out: f64,
    pub bytes_in: f64,
    pub bytes_out: f64,
    pub dropped_messages: f64,
    /// Wake-up calls made into JS.
    pub wakeups: f64,
    /// Batches handed to JS through `pollEvents`.
    pub batches: f64,
    /// Events handed to JS; `events / batches` is the events per call.
    pub events: f64,
}

/// The native half of `WsServer`; the TypeScript facade is its only caller.
#[napi]
pub struct NativeServer {
    engine: Arc<Engine>,
}

#[napi]
impl NativeServer {
    #[napi(constructor)]
    pub fn new(options: Option<NativeOptions>) -> Self {
        let config = Config::from_options(&options.unwrap_or_default());
        NativeServer { engine: Arc::new(Engine::new(config)) }
    }

    /// Registers a WebSocket path.
    #[napi]
    pub fn add_route(&self, path: String) {
        self.engine.add_route(&path);
    }

    /// Binds and starts accepting; `wake` is called (with a hint of the queue length) whenever
    /// events are waiting for `pollEvents`.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn listen<'env>(&self, env: &'env Env, wake: Function<'env, u32, ()>) -> Result<PromiseRaw<'env, u32>> {
        let tsfn = wake.build_threadsafe_function::<u32>().callee_handled::<false>().build()?;
        self.engine.events.set_wake(tsfn);
        let engine = self.engine.clone();
        env.spawn_future(async move {
            let port = server::listen(engine.clone()).await;
            if port.is_err() {
                engine.events.clear_wake();
            }
            Ok(u32::from(port?))
        })
    }

    /// Takes every queued event; an empty batch means the queue is drained.
    #[napi]
    pub fn poll_events(&self) -> Batch {
        let events = self.engine.events.take();
        self.engine.events.encode(events)
    }

    /// Queues a text frame. Returns 0 (sent), 1 (buffered over half the limit) or 2 (dropped).
    #[napi]
    pub fn send_text(&self, conn: u32, data: String) -> u32 {
        self.send(conn, Message::Text(data.into()))
    }

    /// Queues a binary frame; the bytes are copied before returning.
    #[napi]
    pub fn send_binary(&self, conn: u32, data: Uint8ArraySlice) -> u32 {
        self.send(conn, Message::Binary(Bytes::copy_from_slice(&data)))
    }

    /// Starts the close handshake with a code and reason the facade already validated.
    #[napi]
    pub fn close_connection(&self, conn: u32, code: u32, reason: String) -> bool {
        match self.engine.conns.get(&conn) {
            Some(c) => {
                c.close(code as u16, &reason);
                true
            }
            None => false,
        }
    }

    /// Bytes accepted by `send` and not yet written.
    #[napi]
    pub fn buffered_amount(&self, conn: u32) -> u32 {
        self.engine
            .conns
            .get(&conn)
            .map(|c| c.buffered.load(std::sync::atomic::Ordering::Acquire) as u32)
            .unwrap_or(0)
    }

    /// Stops accepting, closes every connection with 1001, and resolves once all are gone
    /// (connections still open after `timeout_ms` are dropped).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn shutdown<'env>(&self, env: &'env Env, timeout_ms: u32) -> Result<PromiseRaw<'env, ()>> {
        let engine = self.engine.clone();
        engine.begin_shutdown();
        env.spawn_future(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(timeout_ms));
            while !engine.conns.is_empty() {
                let gone = engine.conn_gone.notified();
                if engine.conns.is_empty() {
                    break;
                }
                if tokio::time::timeout_at(deadline, gone).await.is_err() {
                    for c in engine.conns.iter() {
                        c.value().abort();
                    }
                    break;
                }
            }
            // Aborted connections still report their close; give them a moment, bounded.
            let grace = tokio::time::Instant::now() + Duration::from_millis(500);
            while !engine.conns.is_empty() && tokio::time::Instant::now() < grace {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        })
    }

    /// Releases the JS callback so the addon no longer keeps the event loop alive.
    #[napi]
    pub fn dispose(&self) {
        self.engine.events.clear_wake();
    }

    /// Counters, including the events-per-batch debug figures.
    #[napi]
    pub fn stats(&self) -> NativeStats {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.engine.stats;
        let q = &self.engine.events;
        NativeStats {
            total_connections: self.engine.conns.len() as u32,
            messages_in: s.messages_in.load(Relaxed) as f64,
            messages_out: s.messages_out.load(Relaxed) as f64,
            bytes_in: s.bytes_in.load(Relaxed) as f64,
            bytes_out: s.bytes_out.load(Relaxed) as f64,
            dropped_messages: s.dropped.load(Relaxed) as f64,
            wakeups: q.wakes.load(Relaxed) as f64,
            batches: q.batches.load(Relaxed) as f64,
            events: q.delivered.load(Relaxed) as f64,
        }
    }
}

impl NativeServer {
    fn send(&self, conn: u32, msg: Message) -> u32 {
        match self.engine.conns.get(&conn) {
            Some(c) => c.send(&self.engine, msg) as u32,
            None => connection::SendStatus::Dropped as u32,
        }
    }
}
