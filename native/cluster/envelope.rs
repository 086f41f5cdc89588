//! The envelope: one broadcast or room message as it travels between nodes through Redis.
//! The emitter (`lib/emitter.ts`) writes the same bytes.

use bytes::Bytes;

use crate::error::EnvelopeError;

/// Layout version; a node ignores envelopes of another version.
pub const ENVELOPE_VERSION: u8 = 2;

/// Fixed part: version, origin (16), binary flag, has-room flag, room length (u16),
/// except count (u32).
const FIXED_BYTES: usize = 1 + 16 + 1 + 1 + 2 + 4;

/// Bit of the flags byte: a binary message.
const FLAG_BINARY: u8 = 1;
/// Bit of the flags byte: a message of a room's history in Redis; the payload starts with
/// `<offset> <epoch>\n`. Every node delivers it, its origin too (see `cluster::history`).
const FLAG_HISTORY: u8 = 2;

/// Where a history message stands: its offset within the room's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered {
    pub offset: u64,
    pub epoch: String,
}

/// One message to fan out on every node.
#[derive(Debug, PartialEq)]
pub struct Envelope {
    pub origin: [u8; 16],
    pub binary: bool,
    /// Set for a history message (its payload is the `room_message` frame).
    pub numbered: Option<Numbered>,
    pub room: Option<String>,
    /// Socket UUIDs to skip.
    pub except: Vec<[u8; 16]>,
    pub payload: Bytes,
}

impl Envelope {
    /// Binary layout: version, origin (16), binary flag, has-room flag, room length (u16 BE) +
    /// room, except count (u32 BE) + 16 bytes each, payload (the rest).
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let flags = u8::from(self.binary) | if self.numbered.is_some() { FLAG_HISTORY } else { 0 };
        let mut out = head(&self.origin, flags, self.room.as_deref(), &self.except, self.payload.len())?;
        if let Some(n) = &self.numbered {
            out.extend_from_slice(format!("{} {}\n", n.offset, n.epoch).as_bytes());
        }
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    /// Parses an envelope; `None` for anything malformed (never panics, and never reserves
    /// more than the bytes at hand justify).
    pub fn decode(data: &[u8]) -> Option<Envelope> {
        fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if data.len() < n {
                return None;
            }
            let (head, rest) = data.split_at(n);
            *data = rest;
            Some(head)
        }
        let mut d = data;
        if take(&mut d, 1)? != [ENVELOPE_VERSION] {
            return None;
        }
        let origin: [u8; 16] = take(&mut d, 16)?.try_into().ok()?;
        let flags = take(&mut d, 1)?[0];
        let binary = flags & FLAG_BINARY != 0;
        let has_room = take(&mut d, 1)?[0] == 1;
        let room_len = take(&mut d, 2)?;
        let room_len = usize::from(u16::from_be_bytes([room_len[0], room_len[1]]));
        let room = std::str::from_utf8(take(&mut d, room_len)?).ok()?.to_string();
        let count = take(&mut d, 4)?;
        let count = usize::try_from(u32::from_be_bytes([count[0], count[1], count[2], count[3]])).ok()?;
        // The count is the sender's claim: check it against the bytes before reserving.
        let ids = take(&mut d, count.checked_mul(16)?)?;
        let except = ids.chunks_exact(16).filter_map(|id| id.try_into().ok()).collect();
        let numbered = if flags & FLAG_HISTORY != 0 {
            let line = d.iter().position(|b| *b == b'\n')?;
            let text = std::str::from_utf8(&d[..line]).ok()?;
            let (offset, epoch) = text.split_once(' ')?;
            let offset = offset.parse::<u64>().ok().filter(|o| *o > 0)?;
            d = &d[line.checked_add(1)?..];
            Some(Numbered { offset, epoch: epoch.to_string() })
        } else {
            None
        };
        Some(Envelope {
            origin,
            binary,
            numbered,
            room: has_room.then_some(room),
            except,
            payload: Bytes::copy_from_slice(d),
        })
    }

    /// The WebSocket message to deliver; `None` when a text payload is not UTF-8.
    pub fn message(&self) -> Option<crate::outbox::OutFrame> {
        if self.binary {
            Some(crate::outbox::OutFrame::binary(&self.payload))
        } else {
            std::str::from_utf8(&self.payload).ok().map(crate::outbox::OutFrame::text)
        }
    }
}

/// Everything before the payload: version, origin, flags, room, except ids.
pub fn head(
    origin: &[u8; 16],
    flags: u8,
    room: Option<&str>,
    except: &[[u8; 16]],
    payload_len: usize,
) -> Result<Vec<u8>, EnvelopeError> {
    let room_text = room.unwrap_or("");
    let room_len = u16::try_from(room_text.len()).map_err(|_| EnvelopeError::RoomTooLong)?;
    let except_len = u32::try_from(except.len()).map_err(|_| EnvelopeError::TooManyExcept)?;
    let mut out = Vec::with_capacity(
        FIXED_BYTES
            .saturating_add(room_text.len())
            .saturating_add(except.len().saturating_mul(16))
            .saturating_add(payload_len),
    );
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(origin);
    out.push(flags);
    out.push(u8::from(room.is_some()));
    out.extend_from_slice(&room_len.to_be_bytes());
    out.extend_from_slice(room_text.as_bytes());
    out.extend_from_slice(&except_len.to_be_bytes());
    for id in except {
        out.extend_from_slice(id);
    }
    Ok(out)
}

/// The head of a history envelope for `room`: the Redis script appends the offset, the epoch
/// and the frame.
pub fn history_head(origin: &[u8; 16], room: &str, except: &[[u8; 16]]) -> Result<Vec<u8>, EnvelopeError> {
    head(origin, FLAG_HISTORY, Some(room), except, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(except: Vec<[u8; 16]>) -> Envelope {
        Envelope {
            origin: [7; 16],
            binary: true,
            numbered: None,
            room: Some("général".into()),
            except,
            payload: Bytes::from_static(&[0, 255, 1]),
        }
    }

    #[test]
    fn round_trip() -> Result<(), EnvelopeError> {
        let e = sample(vec![[1; 16], [2; 16]]);
        assert_eq!(Envelope::decode(&e.encode()?), Some(e));
        let plain = Envelope {
            origin: [1; 16],
            binary: false,
            numbered: None,
            room: None,
            except: vec![],
            payload: Bytes::new(),
        };
        assert_eq!(Envelope::decode(&plain.encode()?), Some(plain));
        Ok(())
    }

    #[test]
    fn history_envelopes_carry_offset_and_epoch() -> Result<(), EnvelopeError> {
        let numbered = Some(Numbered { offset: 42, epoch: "abc".into() });
        let e =
            Envelope { numbered, binary: false, payload: Bytes::from_static(b"{}"), ..sample(vec![[5; 16]]) };
        let bytes = e.encode()?;
        assert_eq!(Envelope::decode(&bytes), Some(e));
        // What the Redis script builds: the head, then `offset epoch\n frame`.
        let mut scripted = history_head(&[7; 16], "général", &[[5; 16]])?;
        scripted.extend_from_slice(b"42 abc\n{}");
        assert_eq!(scripted, bytes);
        let mut bad = history_head(&[7; 16], "r", &[])?;
        bad.extend_from_slice(b"0 abc\n{}");
        assert_eq!(Envelope::decode(&bad), None, "offsets start at 1");
        let mut bad = history_head(&[7; 16], "r", &[])?;
        bad.extend_from_slice(b"x abc");
        assert_eq!(Envelope::decode(&bad), None);
        Ok(())
    }

    #[test]
    fn more_than_65535_except_ids_survive() -> Result<(), EnvelopeError> {
        // The first layout counted them in a u16: 65,536 ids wrapped to 0 and the ids were
        // read as payload.
        let except: Vec<[u8; 16]> = (0..70_000u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_be_bytes());
                id
            })
            .collect();
        let e = sample(except);
        let decoded = Envelope::decode(&e.encode()?);
        assert_eq!(decoded.as_ref().map(|d| d.except.len()), Some(70_000));
        assert_eq!(decoded, Some(e));
        Ok(())
    }

    #[test]
    fn a_room_id_too_long_for_its_field_is_refused_with_a_code() {
        let e = Envelope { room: Some("r".repeat(70_000)), ..sample(vec![]) };
        assert_eq!(e.encode(), Err(EnvelopeError::RoomTooLong));
        let code = crate::error::Error::from(EnvelopeError::RoomTooLong).code();
        assert_eq!(code.as_ref(), "ERR_CLUSTER_ROOM_TOO_LONG");
    }

    #[test]
    fn malformed_envelopes_are_ignored() -> Result<(), EnvelopeError> {
        assert_eq!(Envelope::decode(&[]), None);
        assert_eq!(Envelope::decode(&[9; 40]), None);
        let mut truncated = sample(vec![[3; 16]]).encode()?;
        truncated.truncate(30);
        assert_eq!(Envelope::decode(&truncated), None);
        // Version 1 envelopes (u16 except count) are not read as version 2.
        let mut old = sample(vec![]).encode()?;
        old[0] = 1;
        assert_eq!(Envelope::decode(&old), None);
        Ok(())
    }

    #[test]
    fn a_huge_except_count_is_not_believed() -> Result<(), EnvelopeError> {
        let mut e = sample(vec![]).encode()?;
        let at = FIXED_BYTES - 4 + "général".len();
        e[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Envelope::decode(&e), None);
        // Some bytes after the count do not make it believable either.
        e.extend_from_slice(&[1; 32]);
        assert_eq!(Envelope::decode(&e), None);
        Ok(())
    }
}
