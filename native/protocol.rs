//! The built-in room protocol: JSON text frames handled natively (documented in docs/protocol.md).

use serde_json::{json, Map, Value};

/// A client request of the built-in protocol.
#[derive(Debug, PartialEq)]
pub enum Request {
    Join {
        room: String,
    },
    Leave {
        room: String,
    },
    RoomMessage {
        room: String,
        message: Value,
    },
    Ping {
        timestamp: Value,
    },
    /// After a resumed upgrade: where the client stands in each room, as (room, epoch, offset).
    Recover {
        rooms: Vec<(String, String, u64)>,
    },
    /// Who is in a room (the asker must be a member).
    Presence {
        room: String,
    },
}

/// A parsed protocol frame: the request (or why it is malformed) and the `request_id` to echo.
#[derive(Debug)]
pub struct Parsed {
    pub request: Result<Request, String>,
    pub request_id: Option<Value>,
}

const TYPES: [&str; 6] = ["join_room", "leave_room", "room_message", "ping", "recover", "presence"];

/// Largest offset a client may name: JSON numbers are exact up to 2^53.
pub const MAX_OFFSET: u64 = (1 << 53) - 1;
/// Longest epoch a client may name, in bytes (ours are 16).
const MAX_EPOCH_BYTES: usize = 64;

/// Cheap test before any JSON parsing: protocol frames are objects naming a `type`.
fn looks_like_protocol(text: &str) -> bool {
    text.trim_start().starts_with('{') && text.contains("\"type\"")
}

fn room_field(obj: &Map<String, Value>) -> Result<String, String> {
    match obj.get("room_id") {
        Some(Value::String(s)) if crate::rooms::valid_room_id(s) => Ok(s.clone()),
        Some(Value::String(_)) => {
            Err(format!("room_id must be 1 to {} bytes", crate::rooms::MAX_ROOM_ID_BYTES))
        }
        Some(_) => Err("room_id must be a string".to_string()),
        None => Err("room_id is required".to_string()),
    }
}

/// Returns `None` for application messages (anything that is not a JSON object whose `type`
/// is one of the protocol's), otherwise the request or the reason it is malformed.
pub fn parse(text: &str) -> Option<Parsed> {
    if !looks_like_protocol(text) {
        return None;
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    let kind = obj.get("type").and_then(Value::as_str)?;
    if !TYPES.contains(&kind) {
        return None;
    }
    let request_id = obj.get("request_id").cloned();
    let request = match kind {
        "join_room" => room_field(&obj).map(|room| Request::Join { room }),
        "leave_room" => room_field(&obj).map(|room| Request::Leave { room }),
        "room_message" => room_field(&obj).and_then(|room| match obj.get("message") {
            Some(message) => Ok(Request::RoomMessage { room, message: message.clone() }),
            None => Err("message is required".to_string()),
        }),
        "recover" => recover_rooms(&obj).map(|rooms| Request::Recover { rooms }),
        "presence" => room_field(&obj).map(|room| Request::Presence { room }),
        _ => Ok(Request::Ping { timestamp: obj.get("timestamp").cloned().unwrap_or(Value::Null) }),
    };
    Some(Parsed { request, request_id })
}

/// The `rooms` object of a `recover` request: `{ roomId: { epoch, offset } }`.
fn recover_rooms(obj: &Map<String, Value>) -> Result<Vec<(String, String, u64)>, String> {
    let rooms = match obj.get("rooms") {
        Some(Value::Object(rooms)) => rooms,
        None => return Ok(Vec::new()),
        Some(_) => return Err("rooms must be an object".to_string()),
    };
    let mut out = Vec::with_capacity(rooms.len());
    for (room, pos) in rooms {
        if !crate::rooms::valid_room_id(room) {
            return Err(format!("room ids must be 1 to {} bytes", crate::rooms::MAX_ROOM_ID_BYTES));
        }
        let Value::Object(pos) = pos else {
            return Err(format!("rooms.{room} must be an object {{ epoch, offset }}"));
        };
        let epoch = match pos.get("epoch") {
            Some(Value::String(e)) if e.len() <= MAX_EPOCH_BYTES => e.clone(),
            _ => {
                return Err(format!("rooms.{room}.epoch must be a string of at most {MAX_EPOCH_BYTES} bytes"))
            }
        };
        let offset = match pos.get("offset").and_then(Value::as_u64) {
            Some(o) if o <= MAX_OFFSET => o,
            _ => return Err(format!("rooms.{room}.offset must be an integer from 0 to {MAX_OFFSET}")),
        };
        out.push((room.clone(), epoch, offset));
    }
    Ok(out)
}

fn with_request_id(mut v: Value, request_id: &Option<Value>) -> String {
    if let (Some(id), Value::Object(map)) = (request_id, &mut v) {
        map.insert("request_id".to_string(), id.clone());
    }
    v.to_string()
}

pub fn room_joined(room: &str, request_id: &Option<Value>) -> String {
    with_request_id(json!({ "type": "room_joined", "room_id": room }), request_id)
}

/// `room_joined` with the room's place in its history (when it has one) and, after a resume,
/// whether the missed messages follow (`recovered`).
pub fn room_joined_at(
    room: &str,
    at: Option<&crate::rooms::Joined>,
    recovered: Option<bool>,
    request_id: &Option<Value>,
) -> String {
    let mut v = json!({ "type": "room_joined", "room_id": room });
    if let Value::Object(map) = &mut v {
        if let Some(at) = at {
            map.insert("epoch".to_string(), json!(at.epoch));
            map.insert("offset".to_string(), json!(at.offset));
        }
        if let Some(recovered) = recovered {
            map.insert("recovered".to_string(), json!(recovered));
        }
    }
    with_request_id(v, request_id)
}

/// A room message with its offset in the room's history.
/// Written field by field (the keys in the order `json!` gives them): it runs once per message
/// published to a room with history.
pub fn room_message_at(room: &str, message: &Value, from_client_id: Option<&str>, offset: u64) -> String {
    let (mut out, tail) = room_message_parts(room, message, from_client_id);
    out.push_str(&offset.to_string());
    out.push_str(&tail);
    out
}

/// A numbered room message's text before and after its offset (in a cluster Redis fills in
/// the offset).
pub fn room_message_parts(room: &str, message: &Value, from_client_id: Option<&str>) -> (String, String) {
    let text = |v: &str| Value::String(v.to_string()).to_string();
    let mut head = String::with_capacity(64 + room.len());
    head.push('{');
    if let Some(from) = from_client_id {
        head.push_str("\"from_client_id\":");
        head.push_str(&text(from));
        head.push(',');
    }
    head.push_str("\"message\":");
    head.push_str(&message.to_string());
    head.push_str(",\"offset\":");
    let mut tail = String::with_capacity(32 + room.len());
    tail.push_str(",\"room_id\":");
    tail.push_str(&text(room));
    tail.push_str(",\"type\":\"room_message\"}");
    (head, tail)
}

/// The session token a client presents to resume after an unexpected disconnect.
pub fn session(token: &str, recovered: bool) -> String {
    json!({ "type": "session", "token": token, "recovered": recovered }).to_string()
}

/// The end of a `recover`: for each room of the session, whether every missed message came.
pub fn recovered(rooms: &[(String, bool)], request_id: &Option<Value>) -> String {
    let map: Map<String, Value> = rooms.iter().map(|(r, ok)| (r.clone(), Value::Bool(*ok))).collect();
    with_request_id(json!({ "type": "recovered", "rooms": map }), request_id)
}

pub fn room_left(room: &str, request_id: &Option<Value>) -> String {
    with_request_id(json!({ "type": "room_left", "room_id": room }), request_id)
}

pub fn room_join_error(room: &str, error: &str, request_id: &Option<Value>) -> String {
    with_request_id(json!({ "type": "room_join_error", "room_id": room, "error": error }), request_id)
}

pub fn room_message(room: &str, message: &Value, from_client_id: &str) -> String {
    json!({ "type": "room_message", "room_id": room, "message": message, "from_client_id": from_client_id })
        .to_string()
}

pub fn pong(timestamp: &Value, request_id: &Option<Value>) -> String {
    with_request_id(json!({ "type": "pong", "timestamp": timestamp }), request_id)
}

pub fn error(message: &str, request_id: &Option<Value>) -> String {
    with_request_id(json!({ "type": "error", "error": message }), request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_messages_are_not_protocol() {
        assert!(parse("hello").is_none());
        assert!(parse("{not json \"type\"").is_none());
        assert!(parse(r#"{"type":"chat","text":"x"}"#).is_none());
        assert!(parse(r#"["type"]"#).is_none());
    }

    #[test]
    fn requests() {
        let p = parse(r#"{"type":"join_room","room_id":"a","request_id":7}"#).expect("protocol");
        assert_eq!(p.request, Ok(Request::Join { room: "a".into() }));
        assert_eq!(p.request_id, Some(json!(7)));
        let p = parse(r#"{"type":"join_room"}"#).expect("protocol");
        assert!(p.request.is_err());
        let p = parse(r#"{"type":"leave_room","room_id":5}"#).expect("protocol");
        assert!(p.request.is_err());
        let p = parse(r#"{"type":"room_message","room_id":"a"}"#).expect("protocol");
        assert!(p.request.is_err());
        let p = parse(r#"{"type":"presence","room_id":"a"}"#).expect("protocol");
        assert_eq!(p.request, Ok(Request::Presence { room: "a".into() }));
    }

    #[test]
    fn recover_requests() {
        let p = parse(r#"{"type":"recover","rooms":{"a":{"epoch":"e","offset":3}}}"#).expect("protocol");
        assert_eq!(p.request, Ok(Request::Recover { rooms: vec![("a".into(), "e".into(), 3)] }));
        let p = parse(r#"{"type":"recover"}"#).expect("protocol");
        assert_eq!(p.request, Ok(Request::Recover { rooms: vec![] }));
        for bad in [
            r#"{"type":"recover","rooms":[]}"#,
            r#"{"type":"recover","rooms":{"a":{"epoch":"e","offset":-1}}}"#,
            r#"{"type":"recover","rooms":{"a":{"epoch":"e","offset":1.5}}}"#,
            r#"{"type":"recover","rooms":{"a":{"epoch":"e","offset":"1"}}}"#,
            r#"{"type":"recover","rooms":{"a":{"epoch":"e","offset":9007199254740992}}}"#,
            r#"{"type":"recover","rooms":{"a":{"offset":1}}}"#,
            r#"{"type":"recover","rooms":{"":{"epoch":"e","offset":1}}}"#,
            r#"{"type":"recover","rooms":{"a":5}}"#,
        ] {
            assert!(parse(bad).expect("protocol").request.is_err(), "{bad}");
        }
    }

    #[test]
    fn offsets_in_frames() {
        let at = crate::rooms::Joined { epoch: "e1".into(), offset: 4 };
        assert_eq!(
            room_joined_at("r", Some(&at), Some(true), &None),
            r#"{"epoch":"e1","offset":4,"recovered":true,"room_id":"r","type":"room_joined"}"#
        );
        assert_eq!(
            room_message_at("r", &json!("hi"), Some("c"), 5),
            r#"{"from_client_id":"c","message":"hi","offset":5,"room_id":"r","type":"room_message"}"#
        );
        let m = json!({ "a": [1, "x\"y"] });
        let framed = room_message_at("r\"1", &m, None, 7);
        let back: Value = serde_json::from_str(&framed).expect("valid JSON");
        assert_eq!(back, json!({ "type": "room_message", "room_id": "r\"1", "message": m, "offset": 7 }));
    }

    #[test]
    fn replies_echo_request_id() {
        assert_eq!(
            room_joined("r", &Some(json!("x"))),
            r#"{"request_id":"x","room_id":"r","type":"room_joined"}"#
        );
    }
}
