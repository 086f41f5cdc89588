//! The publisher: queued envelopes go to Redis in order, pipelined.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{log, Cluster, Outbound, BACKOFF_MIN};

/// Most envelopes published in one pipeline.
const MAX_PUBLISH_BATCH: usize = 256;

impl Cluster {
    /// Publishes queued envelopes in order. Whatever is queued when Redis is free goes as one
    /// pipeline (up to `MAX_PUBLISH_BATCH` PUBLISH commands, one round trip), so Redis forwards
    /// a JS batch's broadcasts together and the other nodes fan them out under one cork: one
    /// write per member for the lot, not one per envelope. One connection, so Redis sees this
    /// node's envelopes in the order they were queued, whatever their channels.
    pub(super) async fn publish_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Outbound>) {
        let mut backoff = BACKOFF_MIN;
        let mut batch: Vec<Outbound> = Vec::new();
        'outer: while !self.is_stopped() {
            let mut conn = match self.client.get_multiplexed_async_connection().await {
                Ok(c) => c,
                Err(_) => {
                    if !self.back_off(&mut backoff).await {
                        break;
                    }
                    continue;
                }
            };
            loop {
                if batch.is_empty() {
                    tokio::select! {
                        item = rx.recv() => match item { Some(p) => batch.push(p), None => break 'outer },
                        _ = self.stop.notified() => break 'outer,
                    }
                }
                while batch.len() < MAX_PUBLISH_BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let mut pipe = redis::pipe();
                for (channel, envelope) in &batch {
                    pipe.publish(channel, envelope.as_slice()).ignore();
                }
                match pipe.query_async::<()>(&mut conn).await {
                    Ok(()) => {
                        backoff = BACKOFF_MIN;
                        batch.clear();
                    }
                    Err(e) => {
                        // The batch is sent again after reconnecting (a PUBLISH that went through
                        // before the error is then delivered twice, as with a single retry).
                        log(&format!("publish failed ({e}); reconnecting"));
                        if !self.back_off(&mut backoff).await {
                            break 'outer;
                        }
                        continue 'outer;
                    }
                }
            }
        }
    }
}
