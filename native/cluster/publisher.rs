//! The publisher: queued envelopes go to Redis in order, pipelined.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{log, Cluster, Outbound, BACKOFF_MIN};

/// Most envelopes published in one pipeline.
const MAX_PUBLISH_BATCH: usize = 256;

impl Cluster {
    /// The batch as pipelines: one on one Redis; on a Redis Cluster one per channel (a
    /// pipeline must stay within a slot), each in order, with SPUBLISH.
    fn publish_groups(&self, batch: &[Outbound]) -> Vec<redis::Pipeline> {
        if !self.link.sharded() {
            let mut pipe = redis::pipe();
            for out in batch {
                match out {
                    Outbound::Publish(channel, envelope) => {
                        pipe.publish(channel, envelope.as_slice()).ignore();
                    }
                    Outbound::Numbered(p) => self.add_numbered(&mut pipe, p),
                }
            }
            return vec![pipe];
        }
        let mut groups: Vec<(&str, redis::Pipeline)> = Vec::new();
        // History is refused on a Redis Cluster (see `config`): only envelopes come here.
        let envelopes = batch.iter().filter_map(|out| match out {
            Outbound::Publish(channel, envelope) => Some((channel, envelope)),
            Outbound::Numbered(_) => None,
        });
        for (channel, envelope) in envelopes {
            let i = match groups.iter().position(|(c, _)| *c == channel.as_str()) {
                Some(i) => i,
                None => {
                    groups.push((channel.as_str(), redis::pipe()));
                    groups.len() - 1
                }
            };
            groups[i].1.cmd("SPUBLISH").arg(channel).arg(envelope.as_slice()).ignore();
        }
        groups.into_iter().map(|(_, p)| p).collect()
    }

    /// Publishes queued envelopes in order. Whatever is queued when Redis is free goes as one
    /// pipeline (up to `MAX_PUBLISH_BATCH` PUBLISH commands, one round trip), so Redis forwards
    /// a JS batch's broadcasts together and the other nodes fan them out under one cork: one
    /// write per member for the lot, not one per envelope. One connection, so Redis sees this
    /// node's envelopes in the order they were queued, whatever their channels.
    pub(super) async fn publish_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Outbound>) {
        let mut backoff = BACKOFF_MIN;
        let mut batch: Vec<Outbound> = Vec::new();
        'outer: while !self.is_stopped() {
            let connected = match self.link.connection().await {
                Ok(mut c) => {
                    let loaded = self.link.sharded() || self.load_scripts(&mut c).await.is_ok();
                    if loaded {
                        Ok(c)
                    } else {
                        Err(())
                    }
                }
                Err(_) => Err(()),
            };
            let conn = match connected {
                Ok(c) => c,
                Err(_) => {
                    self.publish_errors.fetch_add(1, Ordering::Relaxed);
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
                match super::link::run_grouped(&conn, self.publish_groups(&batch)).await {
                    Ok(()) => {
                        backoff = BACKOFF_MIN;
                        batch.clear();
                    }
                    Err(e) => {
                        self.publish_errors.fetch_add(1, Ordering::Relaxed);
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
